package main

// A tiny OTLP/HTTP receiver on loopback: it counts the spans and log records the collector
// exports and, per trace, timestamps what section 6 needs: the start of the connect to the
// exfil sink, the end of the story's last span, and the arrival of its finding (the OCSF log
// record of the findings connector, and the finding event on the story's root span).

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

type storyTimes struct {
	connect, lastEnd        time.Time // from the spans
	findingLog, findingSpan time.Time // arrival at the exporter's endpoint
}

type otlpSink struct {
	ln  net.Listener
	srv *http.Server

	mu              sync.Mutex
	spans, logs     int64
	exfilHost       string
	exfilPort       string
	stories         map[pcommon.TraceID]*storyTimes
	requestsBad     int64
	requestsHandled int64
}

func startSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{ln: ln, stories: map[pcommon.TraceID]*storyTimes{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.traces)
	mux.HandleFunc("POST /v1/logs", s.logsHandler)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *otlpSink) addr() string { return s.ln.Addr().String() }
func (s *otlpSink) close()       { _ = s.srv.Close() }

// track makes the sink look for connects to host:port (the exfil sink) and reset its stories.
func (s *otlpSink) track(host, port string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exfilHost, s.exfilPort = host, port
	s.stories = map[pcommon.TraceID]*storyTimes{}
}

// maxSinkBody bounds a request body the sink decodes (the collector's requests are batches
// of at most a few MiB).
const maxSinkBody = 64 << 20

func body(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	case "snappy": // confighttp's: one snappy block, not the framed format
		raw, err := io.ReadAll(io.LimitReader(r.Body, maxSinkBody+1))
		if err != nil {
			return nil, err
		}
		if len(raw) > maxSinkBody {
			return nil, fmt.Errorf("snappy body over %d bytes", maxSinkBody)
		}
		if n, err := snappy.DecodedLen(raw); err != nil {
			return nil, err
		} else if n > maxSinkBody {
			return nil, fmt.Errorf("snappy body of %d bytes decoded", n)
		}
		return snappy.Decode(nil, raw)
	case "x-snappy-framed":
		rd = snappy.NewReader(r.Body)
	case "", "identity":
	default:
		return nil, fmt.Errorf("content encoding %q is not supported", enc)
	}
	raw, err := io.ReadAll(io.LimitReader(rd, maxSinkBody+1))
	if err == nil && len(raw) > maxSinkBody {
		err = fmt.Errorf("body over %d bytes", maxSinkBody)
	}
	return raw, err
}

func (s *otlpSink) story(id pcommon.TraceID) *storyTimes {
	st := s.stories[id]
	if st == nil {
		st = &storyTimes{}
		s.stories[id] = st
	}
	return st
}

func (s *otlpSink) traces(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	raw, err := body(r)
	req := ptraceotlp.NewExportRequest()
	if err == nil {
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		s.mu.Lock()
		s.requestsBad++
		s.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	td := req.Traces()
	s.mu.Lock()
	s.requestsHandled++
	s.spans += int64(td.SpanCount())
	if s.exfilHost != "" {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					sp := spans.At(k)
					st := s.story(sp.TraceID())
					if end := sp.EndTimestamp().AsTime(); end.After(st.lastEnd) {
						st.lastEnd = end
					}
					if sp.Name() == "connect" {
						host, _ := sp.Attributes().Get("network.peer.address")
						port, _ := sp.Attributes().Get("network.peer.port")
						if host.AsString() == s.exfilHost && port.AsString() == s.exfilPort {
							st.connect = sp.StartTimestamp().AsTime()
						}
					}
					for e := 0; e < sp.Events().Len(); e++ {
						if sp.Events().At(e).Name() == "finding" && st.findingSpan.IsZero() {
							st.findingSpan = now
						}
					}
				}
			}
		}
	}
	s.mu.Unlock()
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (s *otlpSink) logsHandler(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	raw, err := body(r)
	req := plogotlp.NewExportRequest()
	if err == nil {
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ld := req.Logs()
	s.mu.Lock()
	s.logs += int64(ld.LogRecordCount())
	if s.exfilHost != "" {
		rls := ld.ResourceLogs()
		for i := 0; i < rls.Len(); i++ {
			sls := rls.At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					if st := s.story(lrs.At(k).TraceID()); st.findingLog.IsZero() {
						st.findingLog = now
					}
				}
			}
		}
	}
	s.mu.Unlock()
	out, _ := plogotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}
