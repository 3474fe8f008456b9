package tracer

import (
	"unsafe"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// SizeOf is the size of a record struct, for Kind.Min and Kind.Full.
func SizeOf[T any]() int { return int(unsafe.Sizeof(*new(T))) }

// SizeHeader is the size of the header every record starts with.
var SizeHeader = SizeOf[probes.EventHeader]()

// As is the one place a record's bytes become a struct: rec must be a handler's view, whose
// Kind.Full is at least T's size (the decoder guarantees the capacity and the 8-byte alignment).
// A view too small for T is a bug of the tracer's kind table: it panics (and the receiver
// recovers and counts it) rather than read another record's memory.
func As[T any](rec []byte) *T {
	if cap(rec) < SizeOf[T]() {
		panic("ebpf receiver: a record viewed as a larger struct than its kind's")
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(rec)))
}

// Prefix returns the first n elements of b (n bounded by len(b)): a kernel array whose
// length the kernel sent beside it.
func Prefix[T any](b []T, n uint32) []T {
	return b[:min(int(n), len(b))]
}

// Bytes returns the first n bytes of b (n bounded by len(b)): a kernel string or buffer whose
// length the kernel sent beside it.
func Bytes(b []uint8, n uint32) []byte { return Prefix(b, n) }

// CString returns the first n bytes of b (bounded by len(b)) as a string.
func CString(b []uint8, n uint32) string {
	return string(Prefix(b, n))
}
