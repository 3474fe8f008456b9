// Package siem has local stand-ins for the SIEMs the end-to-end tests export to: a Splunk HTTP
// Event Collector, and one TLS server that answers as both the Microsoft Entra token endpoint and
// the Azure Monitor Logs Ingestion endpoint. They keep every request body (decompressed) so a
// test can check what arrived and that no secret leaked.
package siem

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// HEC is a Splunk HTTP Event Collector that accepts one token.
type HEC struct {
	Token  string
	srv    *httptest.Server
	down   atomic.Bool
	mu     sync.Mutex
	bodies [][]byte
	events []map[string]any

	// Indexer acknowledgement (EnableAck): every accepted request gets an ackId; its events
	// count as received only once the collector has polled the ack as true. loseNext makes
	// the sink drop the events of the next request it acknowledges-to-be, and never ack it,
	// as an indexer that lost a batch does.
	ack      bool
	nextAck  int64
	acks     map[int64][]map[string]any // ackId → events not yet polled
	lost     map[int64]bool
	loseNext int
	lostReqs int
}

// StartHEC serves HEC on a loopback port.
func StartHEC(token string) *HEC {
	h := &HEC{Token: token}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	return h
}

// StartHECAt is StartHEC on a given address ("" for any free port), for tests where the
// endpoint comes up later than the collector.
func StartHECAt(addr, token string) (*HEC, error) {
	h := &HEC{Token: token}
	srv, err := unstartedAt(addr, http.HandlerFunc(h.serve))
	if err != nil {
		return nil, err
	}
	srv.Start()
	h.srv = srv
	return h, nil
}

// unstartedAt is an httptest server of handler listening on addr ("" for any free port).
func unstartedAt(addr string, handler http.Handler) (*httptest.Server, error) {
	srv := httptest.NewUnstartedServer(handler)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	return srv, nil
}

// URL is the collector endpoint to configure.
func (h *HEC) URL() string { return h.srv.URL + "/services/collector" }

// Close stops the server.
func (h *HEC) Close() { h.srv.Close() }

// SetDown makes the server answer 503 Service Unavailable to everything (an outage) or
// serve again.
func (h *HEC) SetDown(down bool) { h.down.Store(down) }

// EnableAck turns on indexer acknowledgement (the token's useACK).
func (h *HEC) EnableAck() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ack = true
	h.acks = map[int64][]map[string]any{}
	h.lost = map[int64]bool{}
}

// LoseAcks makes the next n acknowledged requests lost: HEC answers Success with an ackId,
// then never reports it indexed and forgets the events.
func (h *HEC) LoseAcks(n int) {
	h.mu.Lock()
	h.loseNext += n
	h.mu.Unlock()
}

// LostRequests is how many requests LoseAcks made the server lose.
func (h *HEC) LostRequests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lostReqs
}

func (h *HEC) serve(w http.ResponseWriter, r *http.Request) {
	if h.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"text":"Server is busy","code":9}`)
		return
	}
	if r.URL.Path == "/services/collector/ack" && r.Header.Get("Authorization") == "Splunk "+h.Token {
		h.serveAck(w, r)
		return
	}
	if r.URL.Path != "/services/collector" || r.Header.Get("Authorization") != "Splunk "+h.Token {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"text":"Invalid token","code":4}`)
		return
	}
	body, err := ReadBody(r)
	if err != nil {
		http.Error(w, `{"text":"Invalid data format","code":6}`, http.StatusBadRequest)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var events []map[string]any
	for dec.More() {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			http.Error(w, `{"text":"Invalid data format","code":6}`, http.StatusBadRequest)
			return
		}
		events = append(events, ev)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodies = append(h.bodies, body)
	if !h.ack {
		h.events = append(h.events, events...)
		_, _ = io.WriteString(w, `{"text":"Success","code":0}`)
		return
	}
	if r.Header.Get("X-Splunk-Request-Channel") == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"text":"Data channel is missing","code":10}`)
		return
	}
	id := h.nextAck
	h.nextAck++
	if h.loseNext > 0 {
		h.loseNext--
		h.lostReqs++
		h.lost[id] = true
	} else {
		h.acks[id] = events
	}
	fmt.Fprintf(w, `{"text":"Success","code":0,"ackId":%d}`, id)
}

// serveAck answers an acknowledgement poll: an ackId is true once, when its events are
// counted as received; a lost one stays false.
func (h *HEC) serveAck(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, `{"text":"Invalid data format","code":6}`, http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ack {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"text":"ACK is disabled","code":14}`)
		return
	}
	out := make(map[string]bool, len(req.Acks))
	for _, id := range req.Acks {
		evs, ok := h.acks[id]
		if ok {
			h.events = append(h.events, evs...)
			delete(h.acks, id)
		}
		out[strconv.FormatInt(id, 10)] = ok
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"acks": out})
}

// Events returns the events received so far.
func (h *HEC) Events() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...)
}

// SpanIDs counts the events received per "span_id" field.
func (h *HEC) SpanIDs() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, ev := range h.events {
		if e, ok := ev["event"].(map[string]any); ok {
			if id, ok := e["span_id"].(string); ok {
				out[id]++
			}
		}
	}
	return out
}

// Bodies returns every request body received, decompressed.
func (h *HEC) Bodies() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

// Azure answers as Microsoft Entra (client-credentials tokens for one tenant and client) and as
// the Logs Ingestion API of one DCR, over TLS with a certificate of its own.
type Azure struct {
	Tenant, ClientID, Secret, DCR string
	srv                           *httptest.Server
	mu                            sync.Mutex
	rows                          map[string][]map[string]any // stream → rows
	bodies                        [][]byte
	token                         string
	down                          atomic.Bool
}

// SetDown makes the ingestion endpoint answer 503 Service Unavailable (an outage; Entra
// still issues tokens) or serve again.
func (a *Azure) SetDown(down bool) { a.down.Store(down) }

// StartAzure serves both roles on one loopback TLS port.
func StartAzure(tenant, clientID, secret, dcr string) *Azure {
	a, err := StartAzureAt("", tenant, clientID, secret, dcr)
	if err != nil {
		panic(err) // a free loopback port cannot be had: nothing in the test can run
	}
	return a
}

// StartAzureAt is StartAzure on a given address ("" for any free port), for tests where the
// endpoint comes up later than the collector. The certificate is httptest's fixed localhost
// certificate, the same for every server, so WriteCA may be called on an earlier instance.
func StartAzureAt(addr, tenant, clientID, secret, dcr string) (*Azure, error) {
	a := &Azure{Tenant: tenant, ClientID: clientID, Secret: secret, DCR: dcr, rows: map[string][]map[string]any{}, token: "e2e-access-token"}
	srv, err := unstartedAt(addr, http.HandlerFunc(a.serve))
	if err != nil {
		return nil, err
	}
	srv.StartTLS()
	a.srv = srv
	return a, nil
}

// URL is the server's https base URL: the ingestion endpoint and the authority host.
func (a *Azure) URL() string { return a.srv.URL }

// Close stops the server.
func (a *Azure) Close() { a.srv.Close() }

// WriteCA writes the server's certificate as a PEM bundle, for SSL_CERT_FILE of the collector.
func (a *Azure) WriteCA(path string) error {
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Pool is the server's certificate as a pool, for clients in the test.
func (a *Azure) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.srv.Certificate())
	return p
}

func (a *Azure) serve(w http.ResponseWriter, r *http.Request) {
	base := a.srv.URL + "/" + a.Tenant
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/"+a.Tenant+"/v2.0/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer": base + "/v2.0",
		})
	case r.Method == http.MethodPost && r.URL.Path == "/"+a.Tenant+"/oauth2/v2.0/token":
		_ = r.ParseForm()
		if r.PostForm.Get("client_id") != a.ClientID || r.PostForm.Get("client_secret") != a.Secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":%q}`, a.token)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/dataCollectionRules/"+a.DCR+"/streams/"):
		if a.down.Load() {
			http.Error(w, `{"error":{"code":"ServiceUnavailable"}}`, http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+a.token {
			http.Error(w, `{"error":{"code":"InvalidToken"}}`, http.StatusUnauthorized)
			return
		}
		body, err := ReadBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var rows []map[string]any
		if err := json.Unmarshal(body, &rows); err != nil {
			http.Error(w, `{"error":{"code":"InvalidPayload"}}`, http.StatusBadRequest)
			return
		}
		stream := strings.TrimPrefix(r.URL.Path, "/dataCollectionRules/"+a.DCR+"/streams/")
		a.mu.Lock()
		a.rows[stream] = append(a.rows[stream], rows...)
		a.bodies = append(a.bodies, body)
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// Rows returns the rows received on a stream.
func (a *Azure) Rows(stream string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.rows[stream]...)
}

// Bodies returns every ingestion request body, decompressed.
func (a *Azure) Bodies() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.bodies...)
}

// ReadBody returns a request's body, gunzipped when its Content-Encoding says gzip, and at
// most 64 MiB of it.
func ReadBody(r *http.Request) ([]byte, error) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		body = zr
	}
	return io.ReadAll(io.LimitReader(body, 64<<20))
}
