package exporterkit

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Helper is what exporterhelper wraps around one of this project's exporters: its start and
// shutdown, and the timeout, retry_on_failure and sending_queue of its config.
type Helper struct {
	Start    component.StartFunc
	Shutdown component.ShutdownFunc
	Timeout  exporterhelper.TimeoutConfig
	Retry    configretry.BackOffConfig
	Queue    configoptional.Optional[exporterhelper.QueueBatchConfig]
}

func (h Helper) options() []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithStart(h.Start),
		exporterhelper.WithShutdown(h.Shutdown),
		// The exporters encode from the pdata without changing it.
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(h.Timeout),
		exporterhelper.WithRetry(h.Retry),
		exporterhelper.WithQueue(h.Queue),
	}
}

// NewTraces builds a traces exporter on push with exporterhelper: what exporterhelper drops is
// counted by d (Drops.HelperSettings), and Shutdown may be called twice (OnceTraces).
func NewTraces(ctx context.Context, set exporter.Settings, cfg component.Config, d *Drops,
	push consumer.ConsumeTracesFunc, h Helper,
) (exporter.Traces, error) {
	e, err := exporterhelper.NewTraces(ctx, d.HelperSettings(set, h.Queue), cfg, push, h.options()...)
	if err != nil {
		return nil, err
	}
	return OnceTraces(e), nil
}

// NewLogs is NewTraces for logs.
func NewLogs(ctx context.Context, set exporter.Settings, cfg component.Config, d *Drops,
	push consumer.ConsumeLogsFunc, h Helper,
) (exporter.Logs, error) {
	e, err := exporterhelper.NewLogs(ctx, d.HelperSettings(set, h.Queue), cfg, push, h.options()...)
	if err != nil {
		return nil, err
	}
	return OnceLogs(e), nil
}
