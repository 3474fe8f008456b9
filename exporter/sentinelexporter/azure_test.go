package sentinelexporter

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// In-test stand-ins for Microsoft Entra ID and the Azure Monitor Logs Ingestion API, both
// behind TLS: the exporter talks to them through the real azidentity and azlogs SDKs.

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "0b5c6f9e-3a4d-4b8e-9f1a-2c3d4e5f6a7b"
	testSecret = "Zq8~s3cr3t.V4lue-n0t-t0-b3-l0gg3d"
	testDCR    = "dcr-0123456789abcdef0123456789abcdef"
	testToken  = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-access-token"
	apiVersion = "2023-01-01"
	// serviceLimit is the Logs Ingestion API limit of one request.
	serviceLimit = 1 << 20
)

// fakeEntra answers the tenant discovery and token requests of MSAL for one tenant.
type fakeEntra struct {
	t      testing.TB
	srv    *httptest.Server
	tenant string
	// accept validates a token request form; nil accepts client credentials with testSecret.
	accept func(form map[string]string) (status int, body string)

	mu            sync.Mutex
	tokenRequests int
	forms         []map[string]string
	other         []string
}

func newFakeEntra(t testing.TB) *fakeEntra {
	e := &fakeEntra{t: t, tenant: testTenant}
	e.srv = httptest.NewUnstartedServer(e)
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut by Close are expected
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEntra) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	base := e.srv.URL + "/" + e.tenant
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/"+e.tenant+"/v2.0/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
		})
	case r.Method == http.MethodPost && r.URL.Path == "/"+e.tenant+"/oauth2/v2.0/token":
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		form := map[string]string{}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		e.mu.Lock()
		e.tokenRequests++
		e.forms = append(e.forms, form)
		accept := e.accept
		e.mu.Unlock()
		status, body := http.StatusOK, ""
		if accept != nil {
			status, body = accept(form)
		} else if form["grant_type"] != "client_credentials" || form["client_id"] != testClient || form["client_secret"] != testSecret {
			status, body = http.StatusUnauthorized, entraError("invalid_client", "AADSTS7000215: Invalid client secret provided.")
		}
		if status == http.StatusOK && body == "" {
			if !strings.Contains(form["scope"], "https://monitor.azure.com/") {
				e.t.Errorf("token requested for scope %q, want the Azure Monitor audience", form["scope"])
			}
			body = fmt.Sprintf(`{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":%q}`, testToken)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	default:
		e.mu.Lock()
		e.other = append(e.other, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		http.NotFound(w, r)
	}
}

func entraError(code, desc string) string {
	b, _ := json.Marshal(map[string]any{
		"error":             code,
		"error_description": desc + "\r\nTrace ID: 0f1e2d3c-0000-4000-8000-000000000000\r\nCorrelation ID: 9a8b7c6d-0000-4000-8000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z",
		"error_codes":       []int{7000215},
		"trace_id":          "0f1e2d3c-0000-4000-8000-000000000000",
	})
	return string(b)
}

func (e *fakeEntra) tokenRequestCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tokenRequests
}

func (e *fakeEntra) unexpected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.other...)
}

// fakeIngestion is a Logs Ingestion endpoint for one DCR that checks each request as the
// service documents it and records the rows of every accepted request, by stream.
type fakeIngestion struct {
	t   *testing.T
	srv *httptest.Server
	// intercept may answer a request itself (n counts requests from 1, rows is the decoded body).
	intercept func(w http.ResponseWriter, r *http.Request, n int, rows []map[string]any) bool

	mu       sync.Mutex
	n        int
	rows     map[string][]map[string]any
	requests []ingestRequest
}

type ingestRequest struct {
	stream  string
	rawLen  int
	wireLen int
	rows    int
}

func newFakeIngestion(t *testing.T) *fakeIngestion {
	f := &fakeIngestion{t: t, rows: map[string][]map[string]any{}}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func ingestionError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (f *fakeIngestion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/dataCollectionRules/" + testDCR + "/streams/"
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, prefix) {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		ingestionError(w, http.StatusNotFound, "NotFound", "no such data collection rule")
		return
	}
	stream := strings.TrimPrefix(r.URL.Path, prefix)
	if got := r.URL.Query().Get("api-version"); got != apiVersion {
		f.t.Errorf("api-version = %q, want %q", got, apiVersion)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		ingestionError(w, http.StatusUnauthorized, "InvalidToken", "The access token is missing or invalid.")
		return
	}
	if got := r.Header.Get("Content-Encoding"); got != "gzip" {
		f.t.Errorf("Content-Encoding = %q, want gzip", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		f.t.Errorf("Content-Type = %q, want application/json", got)
	}
	wire, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("reading body: %v", err)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(wire))
	if err != nil {
		f.t.Errorf("body is not gzip: %v", err)
		ingestionError(w, http.StatusBadRequest, "InvalidContentEncoding", "bad gzip")
		return
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		f.t.Errorf("gunzip: %v", err)
		return
	}
	if len(raw) > serviceLimit {
		f.t.Errorf("request of %d bytes uncompressed exceeds the 1 MiB service limit", len(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		f.t.Errorf("body is not a JSON array of objects: %v", err)
		ingestionError(w, http.StatusBadRequest, "InvalidPayload", "body is not a JSON array")
		return
	}
	f.mu.Lock()
	f.n++
	n := f.n
	intercept := f.intercept
	f.mu.Unlock()
	if intercept != nil && intercept(w, r, n, rows) {
		return
	}
	f.mu.Lock()
	f.rows[stream] = append(f.rows[stream], rows...)
	f.requests = append(f.requests, ingestRequest{stream: stream, rawLen: len(raw), wireLen: len(wire), rows: len(rows)})
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeIngestion) streamRows(stream string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.rows[stream]...)
}

func (f *fakeIngestion) accepted() []ingestRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ingestRequest(nil), f.requests...)
}

func (f *fakeIngestion) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// trustingClient is an http.Client that trusts the test servers' certificates.
func trustingClient(servers ...*httptest.Server) *http.Client {
	pool := x509.NewCertPool()
	for _, s := range servers {
		pool.AddCert(s.Certificate())
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
}
