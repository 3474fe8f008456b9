package ebpfreceiver

import (
	"encoding/binary"
	"unsafe"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// offsetTs is where a record's kernel timestamp (CLOCK_MONOTONIC, ns) is.
const offsetTs = int(unsafe.Offsetof(probes.EventHeader{}.TsNs))

// recordLag is how long the record raw waited between the kernel writing it and now (both
// CLOCK_MONOTONIC ns): what agenttrail.ebpf.reader.lag reports, the longest of each read of the
// ring buffer. A record too short to carry its time, or stamped after now (the kernel's
// timestamp is hostile input too), says 0.
func recordLag(now uint64, raw []byte) uint64 {
	if len(raw) < sizeHeader {
		return 0
	}
	ts := binary.LittleEndian.Uint64(raw[offsetTs:])
	if ts > now {
		return 0
	}
	return now - ts
}
