package sockets

import (
	"unsafe"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

func offsetData() uintptr { return unsafe.Offsetof(probes.FDIOEvent{}.Data) }
