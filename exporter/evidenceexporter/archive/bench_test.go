package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkAppend appends ~2 KiB story records. MB/s counts payload bytes.
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		name  string
		fsync bool
		batch int
	}{
		{"fsync=off/batch=1", false, 1},
		{"fsync=off/batch=64", false, 64},
		{"fsync=on/batch=1", true, 1},
		{"fsync=on/batch=64", true, 64},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			a, err := Open(b.TempDir(), testKey("bench"), Options{Fsync: bc.fsync})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			entries := make([]Entry, bc.batch)
			for i := range entries {
				entries[i] = Entry{Kind: KindStory, TraceID: traceIDFor(i), Payload: payload(i, 2048)}
			}
			b.SetBytes(int64(len(entries[0].Payload) * bc.batch))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := a.Append(context.Background(), entries); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkVerify verifies an archive of 20,000 ~2 KiB records in 64 MiB segments. MB/s counts
// segment bytes.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	a, err := Open(dir, testKey("bench"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	batch := make([]Entry, 100)
	for i := 0; i < n; i += len(batch) {
		for j := range batch {
			batch[j] = Entry{Kind: KindStory, TraceID: traceIDFor(i + j), Payload: payload(i+j, 2048)}
		}
		if err := a.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		b.Fatal(err)
	}
	var size int64
	des, _ := os.ReadDir(filepath.Join(dir, SegmentsDir))
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			size += fi.Size()
		}
	}
	b.SetBytes(size)
	b.ResetTimer()
	var records uint64
	for i := 0; i < b.N; i++ {
		rep, err := VerifyDir(dir, VerifyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		records = rep.Records
	}
	b.StopTimer()
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
