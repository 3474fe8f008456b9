package sockets

import (
	"errors"
	"fmt"
	"time"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// Config is the receiver's `sockets:` section: sends and receives on the sockets of traced
// processes.
type Config struct {
	// Enabled records every send (and receive) on a socket of a traced process. Off, the send
	// calls' exit tracepoints are not attached (probes.syscallFilter): a write runs no program
	// (on the raw-tracepoint fallback, sys_exit returns at its bitmap).
	Enabled bool `mapstructure:"enabled"`
	// Inbound records receives too (agenttrail.ingress.*), not only sends; off, the receive
	// calls' exit tracepoints are not attached.
	Inbound bool `mapstructure:"inbound"`
	// CaptureBytes bounds the payload captured per call of a socket or pipe that carries a
	// plaintext protocol (HTTP/1, h2c, JSON-RPC on a pipe) for the payload consumers; 0: counts
	// only. DNS messages are captured regardless (their first 512 bytes).
	CaptureBytes int `mapstructure:"capture_bytes"`
	// AggregateInterval: a `send` span of a call still running (or of a thread with no call) is
	// emitted at the latest this long after its first I/O.
	AggregateInterval time.Duration `mapstructure:"aggregate_interval"`
	// DNSPort is the peer port whose messages are decoded as DNS.
	DNSPort int `mapstructure:"dns_port"`
}

// DefaultConfig is the section's default.
func DefaultConfig() Config {
	return Config{Enabled: true, Inbound: true, CaptureBytes: 4096, AggregateInterval: 5 * time.Second, DNSPort: 53}
}

// Validate checks the section; keys are quoted as written in YAML.
func (c Config) Validate() error {
	switch {
	case c.CaptureBytes < 0 || c.CaptureBytes > probes.FDIOMaxCaptureBytes:
		return fmt.Errorf(`"sockets.capture_bytes" must be between 0 and %d`, probes.FDIOMaxCaptureBytes)
	case c.AggregateInterval < 100*time.Millisecond:
		return errors.New(`"sockets.aggregate_interval" must be at least 100ms`)
	case c.DNSPort < 1 || c.DNSPort > 65535:
		return errors.New(`"sockets.dns_port" must be a port (1 to 65535)`)
	}
	return nil
}

// ProbeOptions are the kernel side's settings for this section.
func (c Config) ProbeOptions() probes.SocketOptions {
	return probes.SocketOptions{Enabled: c.Enabled, Inbound: c.Inbound, CaptureBytes: uint32(c.CaptureBytes), DNSPort: uint16(c.DNSPort)}
}
