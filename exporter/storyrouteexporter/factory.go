package storyrouteexporter // import "github.com/agenttrail/agenttrail/exporter/storyrouteexporter"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/otlpexporter"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

const (
	defaultMaxTraces   = 100000
	defaultMaxInbound  = 100000
	defaultTraceTTL    = 2 * time.Minute
	defaultDNSPort     = 4317
	defaultDNSInterval = 5 * time.Second
	defaultDNSTimeout  = time.Second
	// The otlp exporter requires an endpoint; each replica's replaces this one.
	placeholderEndpoint = "placeholder:4317"
)

// NewFactory creates a factory for the story route exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createDefaultConfig() component.Config {
	otlp := *otlpexporter.NewFactory().CreateDefaultConfig().(*otlpexporter.Config)
	otlp.ClientConfig.Endpoint = placeholderEndpoint
	otlp.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	otlp.RetryConfig.Enabled = false
	return &Config{
		TimeoutConfig: exporterhelper.NewDefaultTimeoutConfig(),
		QueueConfig:   metadata.NewDefaultSendingQueueConfig(),
		RetryConfig:   configretry.NewDefaultBackOffConfig(),
		Protocol:      Protocol{OTLP: otlp},
		Resolver: Resolver{
			DNS: configoptional.Default(DNSResolver{Port: defaultDNSPort, Interval: defaultDNSInterval, Timeout: defaultDNSTimeout}),
		},
		MaxTraces:  defaultMaxTraces,
		MaxInbound: defaultMaxInbound,
		TraceTTL:   defaultTraceTTL,
	}
}

func createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	exp, _, err := newTraces(ctx, set, c.(*Config))
	return exp, err
}

// newTraces returns the exporter and, for tests, the router inside it.
func newTraces(ctx context.Context, set exporter.Settings, cfg *Config) (exporter.Traces, *routeExporter, error) {
	e, err := newRouteExporter(cfg, set)
	if err != nil {
		return nil, nil, err
	}
	exp, err := exporterkit.NewTraces(ctx, set, cfg, e.drops, e.pushTraces, exporterkit.Helper{
		Start: e.start, Shutdown: e.shutdown,
		Timeout: cfg.TimeoutConfig, Retry: cfg.RetryConfig, Queue: cfg.QueueConfig,
	})
	if err != nil {
		return nil, nil, err
	}
	return exp, e, nil
}
