package splunkhecexporter

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

const (
	// hecPath is appended to an endpoint given without a path, as contrib does.
	hecPath = "services/collector"
	// ackPath is the indexer acknowledgement endpoint of the HTTP Event Collector.
	ackPath = "/services/collector/ack"

	defaultContentLengthLogsLimit   = 2 * 1024 * 1024
	defaultContentLengthTracesLimit = 2 * 1024 * 1024
	defaultMaxEventSize             = 5 * 1024 * 1024
	// maxContentLengthLimit is the upper bound contrib allows for every max_content_length_* and max_event_size.
	maxContentLengthLimit = 800 * 1024 * 1024

	defaultHTTPTimeout          = 15 * time.Second
	defaultIdleConnTimeout      = 10 * time.Second
	defaultMaxIdleConns         = 100
	defaultHTTP2ReadIdleTimeout = 10 * time.Second
	defaultHTTP2PingTimeout     = 10 * time.Second

	defaultSplunkAppName       = "AgentTrail"
	defaultTracesSourcetype    = "otel:span"
	defaultLogsSourcetype      = "agenttrail:finding:ocsf"
	defaultAckPollInterval     = time.Second
	defaultAckTimeout          = 60 * time.Second
	defaultSourceLabel         = "com.splunk.source"
	defaultSourceTypeLabel     = "com.splunk.sourcetype"
	defaultIndexLabel          = "com.splunk.index"
	defaultHostLabel           = "host.name"
	defaultSeverityTextLabel   = "otel.log.severity.text"
	defaultSeverityNumberLabel = "otel.log.severity.number"
	// hecTokenLabel is the resource attribute contrib uses to carry a per-resource HEC token.
	// It is never copied into HEC fields.
	hecTokenLabel = "com.splunk.hec.access_token" // #nosec G101 -- attribute name, not a credential
)

// HecToOtelAttrs maps HEC metadata (source, sourcetype, index, host) to the OpenTelemetry
// attribute whose value overrides it for an event. Same shape and keys as contrib.
type HecToOtelAttrs struct {
	// Source is the attribute that sets the HEC "source" field.
	Source string `mapstructure:"source"`
	// SourceType is the attribute that sets the HEC "sourcetype" field.
	SourceType string `mapstructure:"sourcetype"`
	// Index is the attribute that sets the HEC "index" field.
	Index string `mapstructure:"index"`
	// Host is the attribute that sets the HEC "host" field.
	Host string `mapstructure:"host"`
}

// OtelToHecFields names the HEC fields that receive log record properties. Same keys as contrib.
type OtelToHecFields struct {
	// SeverityText is the HEC field that receives the log record severity text.
	SeverityText string `mapstructure:"severity_text"`
	// SeverityNumber is the HEC field that receives the log record severity number.
	SeverityNumber string `mapstructure:"severity_number"`
}

// AckConfig configures Splunk HEC indexer acknowledgement (at-least-once delivery).
// Contrib's exporter has no equivalent; this block is an AgentTrail extension.
type AckConfig struct {
	// Enabled turns on indexer acknowledgement. The HEC token must have "useACK" enabled in Splunk.
	Enabled bool `mapstructure:"enabled"`
	// PollInterval is the wait between two polls of the acknowledgement endpoint.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// Timeout bounds how long a request waits for its acknowledgement before it is retried.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Config defines the configuration of the Splunk HEC exporter.
type Config struct {
	// ClientConfig carries endpoint, tls, timeout, proxy_url, headers... (squashed as in contrib).
	ClientConfig confighttp.ClientConfig `mapstructure:",squash"`
	// QueueSettings is the exporterhelper sending queue (in-memory or persistent via "storage").
	QueueSettings configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	// BackOffConfig is the exporterhelper retry policy.
	BackOffConfig configretry.BackOffConfig `mapstructure:"retry_on_failure"`

	// Token is the HEC token, sent as "Authorization: Splunk <token>".
	Token configopaque.String `mapstructure:"token"`
	// Source is the default HEC source of every event.
	Source string `mapstructure:"source"`
	// SourceType is the default HEC sourcetype (traces, and logs when logs_sourcetype is empty).
	SourceType string `mapstructure:"sourcetype"`
	// LogsSourceType is the default HEC sourcetype of log records (security findings).
	// AgentTrail extension: not in contrib.
	LogsSourceType string `mapstructure:"logs_sourcetype"`
	// Index is the default Splunk index; empty lets the token's default index apply.
	Index string `mapstructure:"index"`

	// DisableCompression turns gzip off.
	DisableCompression bool `mapstructure:"disable_compression"`
	// MaxContentLengthLogs bounds the uncompressed body of one logs request. 0 means unlimited.
	MaxContentLengthLogs int `mapstructure:"max_content_length_logs"`
	// MaxContentLengthTraces bounds the uncompressed body of one traces request. 0 means unlimited.
	MaxContentLengthTraces int `mapstructure:"max_content_length_traces"`
	// MaxEventSize bounds one JSON-encoded event; larger events are dropped. 0 means unlimited.
	MaxEventSize int `mapstructure:"max_event_size"`

	// SplunkAppName is sent as the __splunk_app_name header.
	SplunkAppName string `mapstructure:"splunk_app_name"`
	// SplunkAppVersion is sent as the __splunk_app_version header (defaults to the build version).
	SplunkAppVersion string `mapstructure:"splunk_app_version"`

	// HecToOtelAttrs maps HEC metadata to attributes.
	HecToOtelAttrs HecToOtelAttrs `mapstructure:"hec_metadata_to_otel_attrs"`
	// OtelAttrsToHec is contrib's newer name for the same mapping; where a field differs from its
	// default it takes precedence over hec_metadata_to_otel_attrs.
	OtelAttrsToHec HecToOtelAttrs `mapstructure:"otel_attrs_to_hec_metadata"`
	// HecFields names the HEC fields that receive log severity.
	HecFields OtelToHecFields `mapstructure:"otel_to_hec_fields"`

	// Ack configures indexer acknowledgement.
	Ack AckConfig `mapstructure:"ack"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and returns the first problem found. It does not modify cfg.
// Nested sections (tls, sending_queue, retry_on_failure) are validated by the collector itself.
func (cfg *Config) Validate() error {
	if cfg.ClientConfig.Endpoint == "" {
		return errors.New(`"endpoint" must not be empty`)
	}
	u, err := url.Parse(cfg.ClientConfig.Endpoint)
	if err != nil {
		return fmt.Errorf(`"endpoint" must be a valid URL: %w`, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf(`"endpoint" must be an http:// or https:// URL, got scheme %q`, u.Scheme)
	}
	if u.Host == "" {
		return errors.New(`"endpoint" must include a host`)
	}
	if cfg.Token == "" {
		return errors.New(`"token" must not be empty`)
	}
	for _, lim := range []struct {
		key   string
		value int
	}{
		{"max_content_length_logs", cfg.MaxContentLengthLogs},
		{"max_content_length_traces", cfg.MaxContentLengthTraces},
		{"max_event_size", cfg.MaxEventSize},
	} {
		if lim.value < 0 || lim.value > maxContentLengthLimit {
			return fmt.Errorf(`"%s" must be between 0 and %d, got %d`, lim.key, maxContentLengthLimit, lim.value)
		}
	}
	if cfg.Ack.Enabled {
		if cfg.Ack.PollInterval <= 0 {
			return fmt.Errorf(`"ack.poll_interval" must be positive when ack is enabled, got %s`, cfg.Ack.PollInterval)
		}
		if cfg.Ack.Timeout <= 0 {
			return fmt.Errorf(`"ack.timeout" must be positive when ack is enabled, got %s`, cfg.Ack.Timeout)
		}
	}
	return nil
}

// eventURL returns the URL events are posted to; an endpoint without a path gets /services/collector.
func (cfg *Config) eventURL() (*url.URL, error) {
	u, err := url.Parse(cfg.ClientConfig.Endpoint)
	if err != nil {
		return nil, err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = path.Join("/", hecPath)
	}
	return u, nil
}

// ackURL derives the acknowledgement endpoint from the event endpoint: any prefix before
// /services/collector (a reverse proxy path) is kept, the query string is dropped.
func ackURL(eventURL *url.URL, channel string) *url.URL {
	u := *eventURL
	prefix := ""
	if i := strings.Index(u.Path, "/services/collector"); i > 0 {
		prefix = u.Path[:i]
	}
	u.Path = prefix + ackPath
	u.RawPath = ""
	u.RawQuery = url.Values{"channel": []string{channel}}.Encode()
	u.Fragment = ""
	return &u
}

// effectiveAttrs resolves hec_metadata_to_otel_attrs and otel_attrs_to_hec_metadata the way
// contrib does: the newer key wins field by field where it was changed from its default.
func (cfg *Config) effectiveAttrs() HecToOtelAttrs {
	def := defaultHecAttrs()
	eff := cfg.HecToOtelAttrs
	if cfg.OtelAttrsToHec == def {
		return eff
	}
	if cfg.OtelAttrsToHec.Source != def.Source {
		eff.Source = cfg.OtelAttrsToHec.Source
	}
	if cfg.OtelAttrsToHec.SourceType != def.SourceType {
		eff.SourceType = cfg.OtelAttrsToHec.SourceType
	}
	if cfg.OtelAttrsToHec.Index != def.Index {
		eff.Index = cfg.OtelAttrsToHec.Index
	}
	if cfg.OtelAttrsToHec.Host != def.Host {
		eff.Host = cfg.OtelAttrsToHec.Host
	}
	return eff
}

func defaultHecAttrs() HecToOtelAttrs {
	return HecToOtelAttrs{
		Source:     defaultSourceLabel,
		SourceType: defaultSourceTypeLabel,
		Index:      defaultIndexLabel,
		Host:       defaultHostLabel,
	}
}
