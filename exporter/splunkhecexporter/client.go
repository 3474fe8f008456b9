package splunkhecexporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

const (
	// maxResponseBody bounds what is read from a HEC response.
	maxResponseBody = 64 << 10
	// maxExcerpt bounds the excerpt of a non-JSON response quoted in an error.
	maxExcerpt = 200
)

// hecResponse is the JSON body HEC answers with, e.g. {"text":"Invalid token","code":4}
// or {"text":"Success","code":0,"ackId":7}.
type hecResponse struct {
	Text  string `json:"text"`
	Code  *int   `json:"code"`
	AckID *int64 `json:"ackId"`
}

// post sends one batch. It returns the ackId when acknowledgement is enabled and HEC issued one.
func (e *hecExporter) post(ctx context.Context, st *encodeState, body []byte) (int64, bool, error) {
	payload := body
	if e.compress {
		st.gzBuf.Reset()
		if st.gz == nil {
			st.gz = gzip.NewWriter(&st.gzBuf)
		} else {
			st.gz.Reset(&st.gzBuf)
		}
		if _, err := st.gz.Write(body); err != nil {
			return 0, false, consumererror.NewPermanent(fmt.Errorf("splunk_hec: gzip: %w", err))
		}
		if err := st.gz.Close(); err != nil {
			return 0, false, consumererror.NewPermanent(fmt.Errorf("splunk_hec: gzip: %w", err))
		}
		payload = st.gzBuf.Bytes()
	}

	// The payload lives in a pooled buffer: the transport may still read the body after Do
	// returns (early responses), so detach it before the buffer can be reused.
	rd := &detachableReader{r: bytes.NewReader(payload)}
	defer rd.detach()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.eventURL, rd)
	if err != nil {
		return 0, false, consumererror.NewPermanent(fmt.Errorf("splunk_hec: building request: %w", err))
	}
	req.ContentLength = int64(len(payload))
	req.Header = e.headers.Clone()
	if e.compress {
		req.Header.Set("Content-Encoding", "gzip")
	}

	resp, err := e.client.Do(req)
	if err != nil {
		// Network errors, timeouts and cancellations are retryable.
		return 0, false, fmt.Errorf("splunk_hec: POST %s: %w", redactedEndpoint(e.eventURL), e.redactErr(err))
	}
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // drain for connection reuse
	_ = resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if !e.cfg.Ack.Enabled {
			return 0, false, nil
		}
		var r hecResponse
		if json.Unmarshal(respBody, &r) == nil && r.AckID != nil {
			return *r.AckID, true, nil
		}
		e.noAckOnce.Do(func() {
			e.logger.Warn("Splunk HEC accepted the request but returned no ackId although \"ack.enabled\" is true; "+
				"enable indexer acknowledgement (useACK) on the HEC token for at-least-once delivery",
				zap.String("endpoint", redactedEndpoint(e.eventURL)))
		})
		return 0, false, nil
	}
	return 0, false, e.statusError(resp, respBody)
}

// statusError builds the error of a non-2xx response: one message naming the status, the path
// and Splunk's "text" (or a short sanitized excerpt of a non-JSON body), classified as
// permanent or retryable. exporterhelper logs it once; the token is never part of it.
func (e *hecExporter) statusError(resp *http.Response, body []byte) error {
	var detail string
	var r hecResponse
	if json.Unmarshal(body, &r) == nil && (r.Text != "" || r.Code != nil) {
		detail = fmt.Sprintf("Splunk says %q", e.redact(r.Text))
		if r.Code != nil {
			detail += fmt.Sprintf(" (code %d)", *r.Code)
		}
	} else {
		detail = fmt.Sprintf("non-JSON response: %q", e.excerpt(body))
	}

	status := resp.StatusCode
	retryable := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
	kind := "permanent, data dropped"
	switch {
	case retryable:
		kind = "retryable"
	case status == http.StatusRequestEntityTooLarge:
		kind = "too large, split in two"
	}
	reqPath := e.eventPath
	if resp.Request != nil && resp.Request.URL != nil {
		reqPath = resp.Request.URL.Path
	}
	err := fmt.Errorf("splunk_hec: HEC rejected POST %s with HTTP %d %s: %s [%s]",
		reqPath, status, http.StatusText(status), detail, kind)

	if status == http.StatusRequestEntityTooLarge {
		// The exporter splits the request (exporterkit.Bisect); permanent if it ever got out.
		return &exporterkit.TooLargeError{Err: consumererror.NewPermanent(err)}
	}
	if !retryable {
		return consumererror.NewPermanent(err)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if delay, ok := parseRetryAfter(resp.Header.Get("Retry-After")); ok {
			return exporterhelper.NewThrottleRetry(err, delay)
		}
	}
	return err
}

// parseRetryAfter accepts delay-seconds or an HTTP-date.
func parseRetryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			secs = 0
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// excerpt returns at most maxExcerpt bytes of body as one printable line without the token.
func (e *hecExporter) excerpt(body []byte) string {
	return exporterkit.OneLine(string(body), maxExcerpt, "", e.redact)
}

func (e *hecExporter) redact(s string) string {
	if e.token == "" {
		return s
	}
	return strings.ReplaceAll(s, e.token, "[REDACTED]")
}

func (e *hecExporter) redactErr(err error) error {
	if e.token == "" || !strings.Contains(err.Error(), e.token) {
		return err
	}
	return errors.New(e.redact(err.Error()))
}

var errAckShutdown = errors.New("splunk_hec: exporter shut down while waiting for indexer acknowledgement")

// waitForAcks polls the acknowledgement endpoint until every pending ackId is acknowledged or
// ack.timeout elapses. It returns the batches still unacknowledged and, if any, a retryable
// error so that exporterhelper (and a persistent queue) sends them again: at-least-once.
func (e *hecExporter) waitForAcks(ctx context.Context, pending []pendingAck) ([]pendingAck, error) {
	deadline := time.NewTimer(e.cfg.Ack.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(e.cfg.Ack.PollInterval)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return pending, fmt.Errorf("splunk_hec: waiting for indexer acknowledgement: %w", ctx.Err())
		case <-e.stopCh:
			return pending, errAckShutdown
		case <-deadline.C:
			ids := make([]int64, len(pending))
			for i, p := range pending {
				ids[i] = p.id
			}
			return pending, fmt.Errorf("splunk_hec: no indexer acknowledgement within %s for %d request(s) (ackIds %v, channel %s); they will be retried",
				e.cfg.Ack.Timeout, len(pending), ids, e.channel)
		case <-tick.C:
		}
		acked, err := e.pollAcks(ctx, pending)
		if err != nil {
			e.logger.Debug("Splunk HEC acknowledgement poll failed; polling again", zap.Error(err))
			continue
		}
		remaining := pending[:0]
		for _, p := range pending {
			if !acked[p.id] {
				remaining = append(remaining, p)
			}
		}
		pending = remaining
	}
	return nil, nil
}

// pollAcks asks HEC which ackIds are indexed: POST /services/collector/ack?channel=<ch>
// with {"acks":[ids]}, answered by {"acks":{"<id>":true|false}}.
func (e *hecExporter) pollAcks(ctx context.Context, pending []pendingAck) (map[int64]bool, error) {
	ids := make([]int64, len(pending))
	for i, p := range pending {
		ids[i] = p.id
	}
	body, _ := json.Marshal(struct {
		Acks []int64 `json:"acks"`
	}{ids})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ackURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, e.redactErr(err)
	}
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, e.statusError(resp, respBody)
	}
	var r struct {
		Acks map[string]bool `json:"acks"`
	}
	if err := json.Unmarshal(respBody, &r); err != nil {
		return nil, fmt.Errorf("splunk_hec: invalid acknowledgement response: %q", e.excerpt(respBody))
	}
	out := make(map[int64]bool, len(r.Acks))
	for k, v := range r.Acks {
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			out[id] = v
		}
	}
	return out, nil
}

// detachableReader is a request body that stops serving its bytes once detached.
type detachableReader struct {
	mu sync.Mutex
	r  *bytes.Reader
}

var errBodyDetached = errors.New("request body no longer available")

func (d *detachableReader) Read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.r == nil {
		return 0, errBodyDetached
	}
	return d.r.Read(p)
}

func (d *detachableReader) Close() error { return nil }

func (d *detachableReader) detach() {
	d.mu.Lock()
	d.r = nil
	d.mu.Unlock()
}
