package redact

import "testing"

func benchmarkString(b *testing.B, file string) {
	b.Helper()
	in := readTestdata(b, file)
	r := New()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.String(in)
	}
}

// BenchmarkStringClean measures the common case: 1 KiB of JSON with digits,
// URLs and key/value pairs but no secrets.
func BenchmarkStringClean(b *testing.B) { benchmarkString(b, "clean.txt") }

// BenchmarkStringDirty measures 1 KiB of an HTTP request full of secrets.
func BenchmarkStringDirty(b *testing.B) { benchmarkString(b, "dirty.txt") }

// BenchmarkValueDirty adds the UTF-8 sanitizing and the copy from []byte.
func BenchmarkValueDirty(b *testing.B) {
	in := []byte(readTestdata(b, "dirty.txt"))
	r := New()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Value(PolicyRedacted, in, false)
	}
}
