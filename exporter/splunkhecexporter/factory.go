package splunkhecexporter

import (
	"context"
	"github.com/agenttrail/agenttrail/internal/exporterkit"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// These values stand in for mdatagen's internal/metadata package (see metadata.yaml).
var (
	// Type is the component type of this exporter.
	Type = component.MustNewType("splunk_hec")
	// ScopeName is the instrumentation scope of the exporter's own telemetry.
	ScopeName = "github.com/agenttrail/agenttrail/exporter/splunkhecexporter"
)

const (
	// TracesStability is the stability level of the traces signal.
	TracesStability = component.StabilityLevelBeta
	// LogsStability is the stability level of the logs signal.
	LogsStability = component.StabilityLevelBeta
)

// NewFactory creates a factory for the Splunk HEC exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		Type,
		createDefaultConfig,
		exporter.WithTraces(createTraces, TracesStability),
		exporter.WithLogs(createLogs, LogsStability),
	)
}

func createDefaultConfig() component.Config {
	clientConfig := confighttp.NewDefaultClientConfig()
	clientConfig.Timeout = defaultHTTPTimeout
	clientConfig.HTTP2ReadIdleTimeout = defaultHTTP2ReadIdleTimeout
	clientConfig.HTTP2PingTimeout = defaultHTTP2PingTimeout
	if ka := clientConfig.Keepalive.Get(); ka != nil {
		ka.IdleConnTimeout = defaultIdleConnTimeout
		ka.MaxIdleConns = defaultMaxIdleConns
		ka.MaxIdleConnsPerHost = defaultMaxIdleConns
	}

	return &Config{
		ClientConfig:           clientConfig,
		QueueSettings:          configoptional.Some(exporterhelper.NewDefaultQueueConfig()),
		BackOffConfig:          configretry.NewDefaultBackOffConfig(),
		SourceType:             defaultTracesSourcetype,
		LogsSourceType:         defaultLogsSourcetype,
		MaxContentLengthLogs:   defaultContentLengthLogsLimit,
		MaxContentLengthTraces: defaultContentLengthTracesLimit,
		MaxEventSize:           defaultMaxEventSize,
		SplunkAppName:          defaultSplunkAppName,
		HecToOtelAttrs:         defaultHecAttrs(),
		OtelAttrsToHec:         defaultHecAttrs(),
		HecFields: OtelToHecFields{
			SeverityText:   defaultSeverityTextLabel,
			SeverityNumber: defaultSeverityNumberLabel,
		},
		Ack: AckConfig{
			Enabled:      false,
			PollInterval: defaultAckPollInterval,
			Timeout:      defaultAckTimeout,
		},
	}
}

func createTraces(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
	oCfg := cfg.(*Config)
	exp, err := newExporter(set, oCfg, signalTraces)
	if err != nil {
		return nil, err
	}
	e, err := exporterhelper.NewTraces(ctx, exp.drops.HelperSettings(set, oCfg.QueueSettings), cfg, exp.pushTraces, helperOptions(exp, oCfg)...)
	if err != nil {
		return nil, err
	}
	return exporterkit.OnceTraces(e), nil
}

func createLogs(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	oCfg := cfg.(*Config)
	exp, err := newExporter(set, oCfg, signalLogs)
	if err != nil {
		return nil, err
	}
	e, err := exporterhelper.NewLogs(ctx, exp.drops.HelperSettings(set, oCfg.QueueSettings), cfg, exp.pushLogs, helperOptions(exp, oCfg)...)
	if err != nil {
		return nil, err
	}
	return exporterkit.OnceLogs(e), nil
}

func helperOptions(exp *hecExporter, cfg *Config) []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithStart(exp.start),
		exporterhelper.WithShutdown(exp.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		// Disabled as in contrib: the HTTP client timeout bounds each request, and the ack
		// timeout bounds the acknowledgement wait.
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithRetry(cfg.BackOffConfig),
		exporterhelper.WithQueue(cfg.QueueSettings),
	}
}
