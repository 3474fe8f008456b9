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
	return wrapped(OnceTraces)(exporterhelper.NewTraces(ctx, d.HelperSettings(set, h.Queue), cfg, push, h.options()...))
}

// NewLogs is NewTraces for logs.
func NewLogs(ctx context.Context, set exporter.Settings, cfg component.Config, d *Drops,
	push consumer.ConsumeLogsFunc, h Helper,
) (exporter.Logs, error) {
	return wrapped(OnceLogs)(exporterhelper.NewLogs(ctx, d.HelperSettings(set, h.Queue), cfg, push, h.options()...))
}

// wrapped applies wrap to what a constructor returns, unless it failed.
func wrapped[E any](wrap func(E) E) func(E, error) (E, error) {
	return func(e E, err error) (E, error) {
		if err != nil {
			var zero E
			return zero, err
		}
		return wrap(e), nil
	}
}
