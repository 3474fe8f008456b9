package k8sattributionprocessor

import (
	"context"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/processor/k8sattributionprocessor/internal/metadata"
)

// NewFactory returns the factory of the k8sattribution processor.
func NewFactory() processor.Factory {
	return newFactory(nil)
}

// NewFactoryWithClient is for tests and embedding: the returned factory's
// processors use client (for example a k8s.io/client-go/kubernetes/fake
// clientset) instead of building one from auth_type; with auth_type none the
// API is still not used. Collector distributions use NewFactory.
func NewFactoryWithClient(client kubernetes.Interface) processor.Factory {
	return newFactory(client)
}

type factory struct {
	client kubernetes.Interface

	mu    sync.Mutex
	cores map[coreKey]*sharedCore
}

// coreKey: the traces and logs processors of one component (same id, same
// config) share one core and so one set of informers.
type coreKey struct {
	id  component.ID
	cfg *Config
}

type sharedCore struct {
	core *core
	refs int
}

func newFactory(client kubernetes.Interface) processor.Factory {
	f := &factory{client: client, cores: map[coreKey]*sharedCore{}}
	return processor.NewFactory(metadata.Type, createDefaultConfig,
		processor.WithTraces(f.createTraces, metadata.TracesStability),
		processor.WithLogs(f.createLogs, metadata.LogsStability))
}

func createDefaultConfig() component.Config {
	return &Config{
		AuthType:        AuthTypeServiceAccount,
		NodeNameEnv:     "K8S_NODE_NAME",
		ProcRoot:        "/proc",
		WaitForMetadata: 2 * time.Second,
		ResyncPeriod:    5 * time.Minute,
		PIDCacheSize:    16384,
	}
}

// instance is one processor (one pipeline) using a shared core.
type instance struct {
	f        *factory
	key      coreKey
	core     *core
	shutOnce sync.Once
}

func (f *factory) acquire(set processor.Settings, cfg *Config) (*instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := coreKey{id: set.ID, cfg: cfg}
	sc := f.cores[key]
	if sc == nil {
		nodeName := cfg.NodeName
		if nodeName == "" && cfg.NodeNameEnv != "" {
			nodeName = os.Getenv(cfg.NodeNameEnv)
		}
		hostName := cfg.HostName
		if hostName == "" && !cfg.Passthrough {
			h, err := os.Hostname()
			if err != nil {
				set.Logger.Warn("k8sattribution: no host name for processes outside pods; set host_name", zap.Error(err))
			}
			hostName = h
		}
		c, err := newCore(set.TelemetrySettings, cfg, f.client, hostName, nodeName)
		if err != nil {
			return nil, err
		}
		sc = &sharedCore{core: c}
		f.cores[key] = sc
	}
	sc.refs++
	return &instance{f: f, key: key, core: sc.core}, nil
}

func (in *instance) start(_ context.Context, host component.Host) error {
	in.core.status.addHost(host)
	return in.core.start()
}

// shutdown releases this instance's share; the last one stops the core.
// Idempotent and safe without start.
func (in *instance) shutdown(context.Context) error {
	in.shutOnce.Do(func() {
		in.f.mu.Lock()
		sc := in.f.cores[in.key]
		last := false
		if sc != nil && sc.core == in.core {
			sc.refs--
			if sc.refs <= 0 {
				delete(in.f.cores, in.key)
				last = true
			}
		}
		in.f.mu.Unlock()
		if last {
			in.core.shutdown()
		}
	})
	return nil
}

var processorCapabilities = consumer.Capabilities{MutatesData: true}

func (f *factory) createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	in, err := f.acquire(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	p, err := processorhelper.NewTraces(ctx, set, cfg, next, in.core.processTraces,
		processorhelper.WithCapabilities(processorCapabilities),
		processorhelper.WithStart(in.start),
		processorhelper.WithShutdown(in.shutdown))
	if err != nil {
		_ = in.shutdown(ctx)
		return nil, err
	}
	return p, nil
}

func (f *factory) createLogs(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
	in, err := f.acquire(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	p, err := processorhelper.NewLogs(ctx, set, cfg, next, in.core.processLogs,
		processorhelper.WithCapabilities(processorCapabilities),
		processorhelper.WithStart(in.start),
		processorhelper.WithShutdown(in.shutdown))
	if err != nil {
		_ = in.shutdown(ctx)
		return nil, err
	}
	return p, nil
}
