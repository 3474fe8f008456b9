package sentinelexporter

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agenttrail/agenttrail/exporter/sentinelexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

// factoryOptions are settings that are not part of the collector configuration.
type factoryOptions struct {
	// transport, when set, carries every HTTP request: to the Logs Ingestion endpoint and to
	// Microsoft Entra ID. Nil builds a private http.Client per exporter in Start.
	transport policy.Transporter
	// noCredentialRetries turns off the SDK's retries of token requests (tests: a failing
	// token endpoint answers at once instead of after the SDK's backoff).
	noCredentialRetries bool
}

// NewFactory creates a factory for the Microsoft Sentinel (Azure Monitor Logs Ingestion) exporter.
func NewFactory() exporter.Factory {
	return newFactory(factoryOptions{})
}

// NewFactoryWithTransport creates a factory whose exporters send every HTTP request (Logs
// Ingestion API and Microsoft Entra ID token requests) through transport, e.g. an *http.Client
// trusting a private CA or carrying instrumentation. It is meant for tests and for programs that
// embed the exporter; the collector distribution uses NewFactory. If transport has a
// CloseIdleConnections method, Shutdown calls it.
func NewFactoryWithTransport(transport policy.Transporter) exporter.Factory {
	return newFactory(factoryOptions{transport: transport})
}

func newFactory(opts factoryOptions) exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithTraces(func(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
			return createTraces(ctx, set, cfg, opts)
		}, metadata.TracesStability),
		exporter.WithLogs(func(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
			return createLogs(ctx, set, cfg, opts)
		}, metadata.LogsStability),
	)
}

func createDefaultConfig() component.Config {
	timeout := exporterhelper.NewDefaultTimeoutConfig()
	timeout.Timeout = defaultTimeout
	return &Config{
		TimeoutConfig:      timeout,
		QueueSettings:      metadata.NewDefaultSendingQueueConfig(),
		BackOffConfig:      configretry.NewDefaultBackOffConfig(),
		StreamNameFindings: defaultStreamFindings,
		StreamNameSpans:    defaultStreamSpans,
		Cloud:              defaultCloud,
		MaxBatchBytes:      defaultMaxBatchBytes,
	}
}

func createTraces(ctx context.Context, set exporter.Settings, cfg component.Config, opts factoryOptions) (exporter.Traces, error) {
	exp, err := newExporter(set, cfg.(*Config), signalTraces, opts)
	if err != nil {
		return nil, err
	}
	return exporterkit.NewTraces(ctx, set, cfg, exp.drops, exp.pushTraces, exp.helper())
}

func createLogs(ctx context.Context, set exporter.Settings, cfg component.Config, opts factoryOptions) (exporter.Logs, error) {
	exp, err := newExporter(set, cfg.(*Config), signalLogs, opts)
	if err != nil {
		return nil, err
	}
	return exporterkit.NewLogs(ctx, set, cfg, exp.drops, exp.pushLogs, exp.helper())
}

func (e *sentinelExporter) helper() exporterkit.Helper {
	return exporterkit.Helper{
		Start: e.start, Shutdown: e.shutdown,
		Timeout: e.cfg.TimeoutConfig, Retry: e.cfg.BackOffConfig, Queue: e.cfg.QueueSettings,
	}
}
