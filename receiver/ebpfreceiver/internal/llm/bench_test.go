package llm

import (
	"testing"
	"time"
)

// BenchmarkExchange is the receiver's work for one recorded LLM call: the tracker reassembles
// it from the program's writes and reads (tracker), Parse reads its bodies (parse), and both in
// a row (both), as the TLS tracer and httpspans.Emit do for every call.
func BenchmarkExchange(b *testing.B) {
	for _, name := range []string{"openai_tool_calls", "openai_stream", "openai_responses", "anthropic_tool_use", "anthropic_stream"} {
		req, resp := read(b, name+".req"), read(b, name+".resp")
		feed := func(tr *Tracker) []Exchange {
			key := Key{PID: 7, Conn: 0xabc}
			var out []Exchange
			out = append(out, tr.Data(key, Write, req, len(req), t0, "meta")...)
			out = append(out, tr.Data(key, Read, resp, len(resp), t0.Add(time.Millisecond), nil)...)
			return out
		}
		exs := feed(NewTracker(Options{}))
		if len(exs) != 1 {
			b.Fatalf("%s: %d exchanges", name, len(exs))
		}
		b.Run(name+"/tracker", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if len(feed(NewTracker(Options{}))) != 1 {
					b.Fatal("no exchange")
				}
			}
		})
		b.Run(name+"/parse", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := Parse(exs[0]); !ok {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
