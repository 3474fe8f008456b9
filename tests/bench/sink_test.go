package main

import (
	"bytes"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
)

// TestSinkBody: the sink decodes what the harness's exporter sends (snappy framed, as the
// distribution's gRPC exporters, and the block format) and refuses a body beyond its bound
// instead of allocating what a length field claims.
func TestSinkBody(t *testing.T) {
	want := bytes.Repeat([]byte("span attributes "), 10000)
	var framed bytes.Buffer
	w := snappy.NewBufferedWriter(&framed)
	_, _ = w.Write(want)
	_ = w.Close()
	for _, c := range []struct {
		encoding string
		body     []byte
	}{{"x-snappy-framed", framed.Bytes()}, {"snappy", snappy.Encode(nil, want)}, {"", want}} {
		r := httptest.NewRequest("POST", "/v1/traces", bytes.NewReader(c.body))
		r.Header.Set("Content-Encoding", c.encoding)
		got, err := body(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%q: %d bytes, %v; want %d bytes", c.encoding, len(got), err, len(want))
		}
	}
	// A snappy block whose header claims more than the bound.
	huge := binary.AppendUvarint(nil, 2*maxSinkBody)
	huge = append(huge, 0)
	r := httptest.NewRequest("POST", "/v1/traces", bytes.NewReader(huge))
	r.Header.Set("Content-Encoding", "snappy")
	if _, err := body(r); err == nil || !strings.Contains(err.Error(), "decoded") {
		t.Fatalf("a block claiming %d bytes: %v", 2*maxSinkBody, err)
	}
}
