package evidenceexporter // import "github.com/agenttrail/agenttrail/exporter/evidenceexporter"

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

const (
	defaultRetentionCheckInterval = time.Hour
)

// NewFactory creates a factory for the evidence exporter.
func NewFactory() exporter.Factory {
	// The traces and logs exporters of one component (and any two components naming the same
	// directory) must share one archive: two writers would fork the chain. The registry lives
	// in the factory, not in a package variable.
	r := &registry{byDir: map[string]*evidenceExporter{}}
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithTraces(r.createTraces, metadata.TracesStability),
		exporter.WithLogs(r.createLogs, metadata.LogsStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		SegmentMaxBytes:        archive.DefaultSegmentMaxBytes,
		SegmentMaxAge:          archive.DefaultSegmentMaxAge,
		RetentionCheckInterval: defaultRetentionCheckInterval,
		Fsync:                  true,
		QueueConfig:            metadata.NewDefaultSendingQueueConfig(),
		RetryConfig:            configretry.NewDefaultBackOffConfig(),
	}
}

func (h *handle) helper(cfg *Config) exporterkit.Helper {
	return exporterkit.Helper{
		Start: h.start, Shutdown: h.shutdown,
		// A local write is not abandoned half-way: it either lands whole or is rolled back.
		Timeout: exporterhelper.TimeoutConfig{Timeout: 0},
		Retry:   cfg.RetryConfig, Queue: cfg.QueueConfig,
	}
}

func (r *registry) createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	cfg := c.(*Config)
	h, err := r.acquire(cfg, set, "traces")
	if err != nil {
		return nil, err
	}
	return exporterkit.NewTraces(ctx, set, cfg, h.drops, h.exp.pushTraces, h.helper(cfg))
}

func (r *registry) createLogs(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Logs, error) {
	cfg := c.(*Config)
	h, err := r.acquire(cfg, set, "logs")
	if err != nil {
		return nil, err
	}
	return exporterkit.NewLogs(ctx, set, cfg, h.drops, h.exp.pushLogs, h.helper(cfg))
}

// registry shares one evidenceExporter per archive directory among the signals.
type registry struct {
	mu    sync.Mutex
	byDir map[string]*evidenceExporter
}

func (r *registry) acquire(cfg *Config, set exporter.Settings, signal string) (*handle, error) {
	key, err := filepath.Abs(cfg.Directory)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byDir[key]
	if e == nil {
		if e, err = newEvidenceExporter(cfg, set.TelemetrySettings); err != nil {
			return nil, err
		}
		r.byDir[key] = e
	} else if e.cfg != cfg && !reflect.DeepEqual(e.cfg, cfg) {
		return nil, fmt.Errorf("directory %q is already used by another evidence exporter with a different configuration", cfg.Directory)
	}
	e.refs++
	return &handle{exp: e, drops: exporterkit.NewDrops(e.dropped, set.Logger, set.ID.String(), signal, itemsOf[signal]), release: func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		e.refs--
		if e.refs > 0 {
			return false
		}
		if r.byDir[key] == e {
			delete(r.byDir, key)
		}
		return true
	}}, nil
}

// itemsOf names what exporterhelper counts for a signal, for the drop summary line.
var itemsOf = map[string]string{"traces": "spans", "logs": "log records"}

// handle is one signal's reference to a shared exporter.
type handle struct {
	exp      *evidenceExporter
	drops    *exporterkit.Drops // what exporterhelper dropped for this signal, counted and logged
	release  func() (last bool)
	shutOnce sync.Once
	shutErr  error
}

func (h *handle) start(ctx context.Context, host component.Host) error {
	if err := h.exp.start(ctx, host); err != nil {
		return err
	}
	h.drops.Start()
	return nil
}

// shutdown is idempotent and safe when start never ran; the archive is sealed when the last
// signal using it shuts down.
func (h *handle) shutdown(ctx context.Context) error {
	h.shutOnce.Do(func() {
		// exporterhelper has shut its queue down by now: the last summary line includes what
		// the shutdown dropped or kept.
		h.drops.Shutdown()
		if h.release() {
			h.shutErr = h.exp.shutdown(ctx)
		}
	})
	return h.shutErr
}
