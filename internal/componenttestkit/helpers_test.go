package componenttestkit

import (
	"os"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

func noopProvider() metric.MeterProvider { return noop.NewMeterProvider() }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
