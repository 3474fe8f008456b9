package splunkhecexporter

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHEC is an in-test Splunk HTTP Event Collector that checks the protocol as Splunk
// documents it (services/collector, services/collector/event, services/collector/ack) and
// records every event it accepts.
type fakeHEC struct {
	t      *testing.T
	srv    *httptest.Server
	token  string
	useAck bool // token with indexer acknowledgement: channel required, ackId issued
	// ackAfterPolls: an ackId reads true from the (ackAfterPolls+1)th poll that asks for it;
	// -1 never acknowledges.
	ackAfterPolls int
	// neverAck lists ackIds that are never acknowledged (data lost before indexing).
	neverAck map[int64]bool
	// intercept, if set, may answer an event request itself (n counts event requests from 1).
	intercept func(w http.ResponseWriter, r *http.Request, n int) bool

	mu        sync.Mutex
	events    []map[string]any
	requests  []hecRequest
	eventReqs int
	ackPolls  int
	nextAckID int64
	polls     map[int64]int
}

type hecRequest struct {
	contentEncoding string
	channel         string
	header          http.Header
	rawLen          int // uncompressed body length
	wireLen         int
	events          int
}

func newFakeHEC(t *testing.T, token string) *fakeHEC {
	h := &fakeHEC{t: t, token: token, polls: map[int64]int{}}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func newFakeHECTLS(t *testing.T, token string) *fakeHEC {
	h := &fakeHEC{t: t, token: token, polls: map[int64]int{}}
	h.srv = httptest.NewTLSServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHEC) endpoint() string { return h.srv.URL + "/services/collector" }

func hecReply(w http.ResponseWriter, status int, text string, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"text":%q,"code":%d}`, text, code)
}

func (h *fakeHEC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/services/collector", "/services/collector/event":
		h.serveEvents(w, r)
	case "/services/collector/ack":
		h.serveAck(w, r)
	default:
		hecReply(w, http.StatusNotFound, "The requested URL was not found on this server.", 404)
	}
}

// authorized answers like Splunk when the Authorization header is missing or wrong.
// (Splunk itself answers a wrong token with 403 code 4; this server uses 401, as both are
// permanent failures for the exporter.)
func (h *fakeHEC) authorized(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		hecReply(w, http.StatusUnauthorized, "Token is required", 2)
		return false
	}
	if auth != "Splunk "+h.token {
		hecReply(w, http.StatusUnauthorized, "Invalid token", 4)
		return false
	}
	return true
}

func channelOf(r *http.Request) string {
	if c := r.Header.Get("X-Splunk-Request-Channel"); c != "" {
		return c
	}
	return r.URL.Query().Get("channel")
}

func (h *fakeHEC) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		hecReply(w, http.StatusMethodNotAllowed, "Method not allowed", 0)
		return
	}
	h.mu.Lock()
	h.eventReqs++
	n := h.eventReqs
	h.mu.Unlock()
	if !h.authorized(w, r) {
		return
	}
	if h.intercept != nil && h.intercept(w, r, n) {
		return
	}
	wire, err := io.ReadAll(r.Body)
	if err != nil {
		hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
		return
	}
	raw := wire
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(strings.NewReader(string(wire)))
		if err != nil {
			hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
			return
		}
		raw, err = io.ReadAll(zr)
		if err != nil {
			hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
			return
		}
	}
	channel := channelOf(r)
	if h.useAck && channel == "" {
		hecReply(w, http.StatusBadRequest, "Data channel is missing", 10)
		return
	}
	// The body is a stream of JSON objects (newline separated here).
	var events []map[string]any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	for {
		var ev map[string]any
		if err := dec.Decode(&ev); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
			return
		}
		body, ok := ev["event"]
		if !ok {
			hecReply(w, http.StatusBadRequest, "Event field is required", 12)
			return
		}
		if body == nil || body == "" {
			hecReply(w, http.StatusBadRequest, "Event field cannot be blank", 13)
			return
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		hecReply(w, http.StatusBadRequest, "No data", 5)
		return
	}

	h.mu.Lock()
	h.events = append(h.events, events...)
	h.requests = append(h.requests, hecRequest{
		contentEncoding: r.Header.Get("Content-Encoding"),
		channel:         channel,
		header:          r.Header.Clone(),
		rawLen:          len(raw),
		wireLen:         len(wire),
		events:          len(events),
	})
	ackID := h.nextAckID
	h.nextAckID++
	h.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if h.useAck {
		fmt.Fprintf(w, `{"text":"Success","code":0,"ackId":%d}`, ackID)
		return
	}
	fmt.Fprint(w, `{"text":"Success","code":0}`)
}

func (h *fakeHEC) serveAck(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	if !h.useAck {
		hecReply(w, http.StatusBadRequest, "ACK is disabled", 14)
		return
	}
	if r.URL.Query().Get("channel") == "" && r.Header.Get("X-Splunk-Request-Channel") == "" {
		hecReply(w, http.StatusBadRequest, "Data channel is missing", 10)
		return
	}
	var req struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Acks == nil {
		hecReply(w, http.StatusBadRequest, "Invalid data format", 6)
		return
	}
	h.mu.Lock()
	h.ackPolls++
	out := map[string]bool{}
	for _, id := range req.Acks {
		h.polls[id]++
		out[strconv.FormatInt(id, 10)] = h.ackAfterPolls >= 0 && h.polls[id] > h.ackAfterPolls && !h.neverAck[id]
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"acks": out})
}

func (h *fakeHEC) recordedEvents() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...)
}

func (h *fakeHEC) recordedRequests() []hecRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hecRequest(nil), h.requests...)
}

func (h *fakeHEC) eventRequestCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.eventReqs
}

func (h *fakeHEC) ackPollCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ackPolls
}
