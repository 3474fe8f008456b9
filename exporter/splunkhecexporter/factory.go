package splunkhecexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agenttrail/agenttrail/exporter/splunkhecexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

// NewFactory creates a factory for the Splunk HEC exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithTraces(createTraces, metadata.TracesStability),
		exporter.WithLogs(createLogs, metadata.LogsStability),
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
		QueueSettings:          metadata.NewDefaultSendingQueueConfig(),
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
