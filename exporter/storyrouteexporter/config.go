package storyrouteexporter

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
)

// maxBackends bounds the replicas one exporter sends to: a DNS answer is foreign input, and a
// replica set larger than this is not a gateway tier this exporter was made for.
const maxBackends = 64

// Config of the story route exporter. The queue, retry and timeout are the exporter's own,
// ahead of the routing: a request that failed is routed again when it is retried, so data
// queued for a replica that went away goes to the replica that took over its keys.
type Config struct {
	TimeoutConfig exporterhelper.TimeoutConfig                             `mapstructure:",squash"`
	QueueConfig   configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig   configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`

	// Protocol is the OTLP/gRPC exporter configuration of every replica; its endpoint is set
	// per replica.
	Protocol Protocol `mapstructure:"protocol"`
	// Resolver says where the replicas are: exactly one of static and dns.
	Resolver Resolver `mapstructure:"resolver"`

	// MaxTraces bounds the traces remembered with their key, so that a later batch of a trace
	// (without socket spans) follows its first to the same replica.
	MaxTraces int `mapstructure:"max_traces"`
	// TraceTTL is how long a trace and an accepted connection are remembered.
	TraceTTL time.Duration `mapstructure:"trace_ttl"`
	// MaxInbound bounds the accepted connections remembered (which side of a connection a
	// socket span is on).
	MaxInbound int `mapstructure:"max_inbound"`
}

// Protocol holds the exporter configuration of each replica.
type Protocol struct {
	OTLP otlpexporter.Config `mapstructure:"otlp"`
}

// Resolver: a static list of replicas or a DNS name whose addresses are the replicas.
type Resolver struct {
	Static configoptional.Optional[StaticResolver] `mapstructure:"static"`
	DNS    configoptional.Optional[DNSResolver]    `mapstructure:"dns"`
}

// StaticResolver is a fixed list of replicas, each host:port.
type StaticResolver struct {
	Hostnames []string `mapstructure:"hostnames"`
}

// DNSResolver resolves Hostname (a headless Service) every Interval; each address, with Port,
// is a replica.
type DNSResolver struct {
	Hostname string        `mapstructure:"hostname"`
	Port     int           `mapstructure:"port"`
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"`
}

var _ component.Config = (*Config)(nil)

// Validate stops at the first problem. The nested configs (protocol::otlp, sending_queue) are
// validated by the collector on their own.
func (c *Config) Validate() error {
	switch {
	case !c.Resolver.Static.HasValue() && !c.Resolver.DNS.HasValue():
		return errors.New(`"resolver" must have one of "static" and "dns"`)
	case c.Resolver.Static.HasValue() && c.Resolver.DNS.HasValue():
		return errors.New(`"resolver" must have only one of "static" and "dns"`)
	}
	if c.Resolver.Static.HasValue() {
		s := c.Resolver.Static.Get()
		if len(s.Hostnames) == 0 {
			return errors.New(`"resolver::static::hostnames" must not be empty`)
		}
		if len(s.Hostnames) > maxBackends {
			return fmt.Errorf(`"resolver::static::hostnames" has %d entries, at most %d`, len(s.Hostnames), maxBackends)
		}
		for _, h := range s.Hostnames {
			if err := checkHostPort(h); err != nil {
				return fmt.Errorf(`"resolver::static::hostnames": %q: %w`, h, err)
			}
		}
	}
	if c.Resolver.DNS.HasValue() {
		d := c.Resolver.DNS.Get()
		switch {
		case d.Hostname == "":
			return errors.New(`"resolver::dns::hostname" must not be empty`)
		case d.Port < 1 || d.Port > 65535:
			return errors.New(`"resolver::dns::port" must be between 1 and 65535`)
		case d.Interval < 100*time.Millisecond:
			return errors.New(`"resolver::dns::interval" must be at least 100ms`)
		case d.Timeout <= 0:
			return errors.New(`"resolver::dns::timeout" must be positive`)
		}
	}
	// The replicas' own queue and retry would hold data for one replica: when it goes away
	// (a rescheduled pod has a new address) what they hold is lost, or stranded on disk under
	// an address that never comes back. The exporter's own queue routes it again instead.
	if c.Protocol.OTLP.QueueConfig.HasValue() {
		return errors.New(`"protocol::otlp::sending_queue" must not be enabled: use the exporter's own "sending_queue"`)
	}
	if c.Protocol.OTLP.RetryConfig.Enabled {
		return errors.New(`"protocol::otlp::retry_on_failure" must not be enabled: use the exporter's own "retry_on_failure"`)
	}
	switch {
	case c.MaxTraces < 1:
		return errors.New(`"max_traces" must be positive`)
	case c.MaxInbound < 1:
		return errors.New(`"max_inbound" must be positive`)
	case c.TraceTTL <= 0:
		return errors.New(`"trace_ttl" must be positive`)
	}
	return nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return errors.New("port must be between 1 and 65535")
	}
	return nil
}
