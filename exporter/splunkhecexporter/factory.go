package splunkhecexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configretry"
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
	exp, err := newExporter(set, cfg.(*Config), signalTraces)
	if err != nil {
		return nil, err
	}
	return exporterkit.NewTraces(ctx, set, cfg, exp.drops, exp.pushTraces, exp.helper())
}

func createLogs(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	exp, err := newExporter(set, cfg.(*Config), signalLogs)
	if err != nil {
		return nil, err
	}
	return exporterkit.NewLogs(ctx, set, cfg, exp.drops, exp.pushLogs, exp.helper())
}

func (e *hecExporter) helper() exporterkit.Helper {
	return exporterkit.Helper{
		Start: e.start, Shutdown: e.shutdown,
		// Disabled as in contrib: the HTTP client timeout bounds each request, and the ack
		// timeout bounds the acknowledgement wait.
		Timeout: exporterhelper.TimeoutConfig{Timeout: 0},
		Retry:   e.cfg.BackOffConfig, Queue: e.cfg.QueueSettings,
	}
}
