// Package jaeger starts the Jaeger built from tests/tools (in-memory, config tests/tools/jaeger.yaml)
// and reads traces back through its HTTP query API, for the demo and the end-to-end tests. The
// Jaeger built from Go modules has no UI assets: the API is what there is.
package jaeger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"
)

// Ports of tests/tools/jaeger.yaml.
const (
	OTLPGRPCEndpoint = "127.0.0.1:24317"
	QueryURL         = "http://127.0.0.1:26686"
)

// Jaeger is a running Jaeger.
type Jaeger struct {
	cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// repoRoot is the repository root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binary is where `make tools` builds Jaeger.
func Binary() string { return filepath.Join(repoRoot(), "tests", "tools", "bin", "jaeger") }

// Start runs Jaeger with its log in dir and waits until its query API answers.
func Start(ctx context.Context, dir string) (*Jaeger, error) {
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("jaeger is not built (%s): run make tools", bin)
	}
	// A Jaeger left running (by a demo or a killed test) would answer in place of this one, with
	// its old traces: refuse rather than read them.
	if _, err := (&Jaeger{}).Services(ctx); err == nil {
		return nil, fmt.Errorf("something already answers on %s (a Jaeger left running?): stop it first", QueryURL)
	}
	log := filepath.Join(dir, "jaeger.log")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config="+filepath.Join(repoRoot(), "tests", "tools", "jaeger.yaml"))
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	j := &Jaeger{cmd: cmd, Log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(j.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := j.Services(ctx); err == nil {
			return j, nil
		}
		select {
		case <-j.done:
			return nil, fmt.Errorf("jaeger exited at start; see %s", log)
		case <-ctx.Done():
			j.Stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			j.Stop()
			return nil, fmt.Errorf("jaeger's query API did not answer within 30s; see %s", log)
		}
	}
}

// Stop ends Jaeger. Safe to call twice.
func (j *Jaeger) Stop() {
	if j == nil || j.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
		<-j.done
	}
}

// Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span of a Trace. Times are microseconds since the epoch.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to its parent.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// Process is a span's resource.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns a tag's value as text, "" when absent.
func Tag(tags []KeyValue, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Parent is the span's parent id, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// SortByStart orders a trace's spans by start time.
func (t *Trace) SortByStart() {
	sort.SliceStable(t.Spans, func(i, j int) bool { return t.Spans[i].StartTime < t.Spans[j].StartTime })
}

type response[T any] struct {
	Data   T   `json:"data"`
	Errors any `json:"errors"`
}

func get[T any](ctx context.Context, path string, out *T) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, QueryURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger %s: %s", path, resp.Status)
	}
	var r response[T]
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("jaeger %s: %w", path, err)
	}
	*out = r.Data
	return nil
}

var errNotFound = errors.New("not found")

// Services lists the services Jaeger has traces of.
func (j *Jaeger) Services(ctx context.Context) ([]string, error) {
	var s []string
	return s, get(ctx, "/api/services", &s)
}

// Traces returns the service's traces (at most limit, newest first).
func (j *Jaeger) Traces(ctx context.Context, service string, limit int) ([]Trace, error) {
	return j.TracesWith(ctx, service, "", limit)
}

// TracesWith returns the service's traces that contain a span named operation ("" for any).
func (j *Jaeger) TracesWith(ctx context.Context, service, operation string, limit int) ([]Trace, error) {
	var t []Trace
	q := url.Values{"service": {service}, "limit": {fmt.Sprint(limit)}, "lookback": {"1h"}}
	if operation != "" {
		q.Set("operation", operation)
	}
	return t, get(ctx, "/api/traces?"+q.Encode(), &t)
}

// Trace returns one trace by id.
func (j *Jaeger) Trace(ctx context.Context, id string) (Trace, error) {
	var t []Trace
	if err := get(ctx, "/api/traces/"+id, &t); err != nil {
		return Trace{}, err
	}
	if len(t) == 0 {
		return Trace{}, errNotFound
	}
	return t[0], nil
}
