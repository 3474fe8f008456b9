package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// FDIOEvent is one send or receive on a socket or plaintext pipe (EVENT_FD_IO).
type FDIOEvent = syscallsFdIoEvent

// KindFDIO is EventHeader.Kind of an FDIOEvent.
const KindFDIO = uint32(uprobeEventKindEVENT_FD_IO)

// FDIOEvent fields (enum fd_io_direction, fd_io_kind, fd_io_flags), as the record carries them.
const (
	FDIOSend = uint8(syscallsFdIoDirectionFD_IO_SEND)
	FDIORecv = uint8(syscallsFdIoDirectionFD_IO_RECV)

	FDIOTCP   = uint8(syscallsFdIoKindFD_IO_TCP)
	FDIOUDP   = uint8(syscallsFdIoKindFD_IO_UDP)
	FDIOUnix  = uint8(syscallsFdIoKindFD_IO_UNIX)
	FDIOPipe  = uint8(syscallsFdIoKindFD_IO_PIPE)
	FDIOOther = uint8(syscallsFdIoKindFD_IO_OTHER)

	FDIOPeerUnknown = uint8(syscallsFdIoFlagsFD_IO_F_PEER_UNKNOWN)
	FDIOTruncated   = uint8(syscallsFdIoFlagsFD_IO_F_TRUNCATED)
	FDIOPayloadCut  = uint8(syscallsFdIoFlagsFD_IO_F_PAYLOAD_CUT)
	FDIOReadFailed  = uint8(syscallsFdIoFlagsFD_IO_F_READ_FAILED)
	FDIODNS         = uint8(syscallsFdIoFlagsFD_IO_F_DNS)
	FDIOPlain       = uint8(syscallsFdIoFlagsFD_IO_F_PLAIN)
	FDIOIovCut      = uint8(syscallsFdIoFlagsFD_IO_F_IOV_CUT)
)

// Bounds of socket I/O records compiled into the kernel programs.
const (
	// FDIOMaxCaptureBytes bounds SocketOptions.CaptureBytes (FD_IO_MAX_CAPTURE).
	FDIOMaxCaptureBytes = 65536
	// FDIODNSCaptureBytes: the bytes of a DNS message sent, whatever CaptureBytes says.
	FDIODNSCaptureBytes = 512
	// FDIOMaxMmsg: sendmmsg/recvmmsg messages whose lengths are summed (FD_IO_MAX_MMSG).
	FDIOMaxMmsg = 8
	// FDIOMaxIov: buffers of a writev/readv or sendmsg/recvmsg whose data is captured, within
	// CaptureBytes in all (FD_IO_MAX_IOV); FDIOIovCut marks a call with more.
	FDIOMaxIov = 16
)

// SocketOptions configure the socket I/O records (EVENT_FD_IO) of traced processes.
type SocketOptions struct {
	Enabled bool
	Inbound bool // receives too, not only sends
	// CaptureBytes bounds the payload sent of a socket or pipe that carries a plaintext
	// protocol (0: counts only; DNS messages are captured regardless, up to FDIODNSCaptureBytes).
	CaptureBytes uint32
	// DNSPort is the peer port whose messages are DNS (default 53).
	DNSPort uint16
}

// apply sets the programs' constants and sizes the per-CPU record buffer.
func (o SocketOptions) apply(spec *ebpf.CollectionSpec, cpus int) error {
	if o.CaptureBytes > FDIOMaxCaptureBytes {
		return fmt.Errorf("socket capture of %d bytes per call is over the limit of %d", o.CaptureBytes, FDIOMaxCaptureBytes)
	}
	port := o.DNSPort
	if port == 0 {
		port = 53
	}
	if m, ok := spec.Maps["fd_scratch"]; ok {
		m.MaxEntries = uint32(cpus)
	}
	for name, value := range map[string]any{
		"sockets_enabled": boolByte(o.Enabled), "sockets_inbound": boolByte(o.Inbound),
		"fd_capture_bytes": o.CaptureBytes, "dns_port": port,
	} {
		v, ok := spec.Variables[name]
		if !ok {
			continue
		}
		if err := v.Set(value); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// MarkPlain tells the kernel that a socket (key: its sock identity) or pipe (key: its inode
// number) carries a plaintext protocol (capture its payload) or not.
func (s *Set) MarkPlain(key uint64, plain bool) error {
	if plain {
		return s.sys.PlainFds.Put(key, uint8(1))
	}
	err := s.sys.PlainFds.Delete(key)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}
