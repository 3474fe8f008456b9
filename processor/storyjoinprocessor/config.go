package storyjoinprocessor

import (
	"errors"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Config of the storyjoin processor. Every key is documented in README.md.
type Config struct {
	// Wait is how long a server-side trace is held for its client half before it is exported
	// unjoined.
	Wait time.Duration `mapstructure:"wait"`
	// Window is the clock skew allowed between nodes: the server-side span must start within
	// the client span's interval widened by Window on both sides.
	Window time.Duration `mapstructure:"window"`
	// ClientTTL is how long a client-side span stays matchable after it was seen.
	ClientTTL time.Duration `mapstructure:"client_ttl"`
	// MaxPendingSpans bounds the spans held waiting for their client half.
	MaxPendingSpans int `mapstructure:"max_pending_spans"`
	// MaxClients bounds the client-side spans remembered for matching.
	MaxClients int `mapstructure:"max_clients"`
	// MaxInbound bounds the accepted connections remembered per node (which side of a
	// connection a socket span is).
	MaxInbound int `mapstructure:"max_inbound"`
}

var _ component.Config = (*Config)(nil)

// Validate is pure and stops at the first problem.
func (c *Config) Validate() error {
	switch {
	case c.Wait <= 0:
		return errors.New(`"wait" must be positive`)
	case c.Wait > 10*time.Minute:
		return errors.New(`"wait" must be at most 10m`)
	case c.Window < 0:
		return errors.New(`"window" must not be negative`)
	case c.ClientTTL < c.Wait:
		return errors.New(`"client_ttl" must be at least "wait"`)
	case c.MaxPendingSpans <= 0:
		return errors.New(`"max_pending_spans" must be positive`)
	case c.MaxClients <= 0:
		return errors.New(`"max_clients" must be positive`)
	case c.MaxInbound <= 0:
		return errors.New(`"max_inbound" must be positive`)
	}
	return nil
}
