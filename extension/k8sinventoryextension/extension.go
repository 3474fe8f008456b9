package k8sinventoryextension

import (
	"context"
	"os"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

const userAgent = "agenttrail-k8sinventory"

// Inventory is the running extension. Components find it among the host's extensions and call
// Informers.
type Inventory struct {
	cfg    *Config
	logger *zap.Logger
	client kubernetes.Interface

	mu       sync.Mutex
	inf      *k8sinventory.Informers
	nodeName string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

var _ extension.Extension = (*Inventory)(nil)

func newInventory(set extension.Settings, cfg *Config, client kubernetes.Interface) *Inventory {
	return &Inventory{cfg: cfg, logger: set.Logger, client: client}
}

// Start builds the client and starts the informers. It does not wait for them to sync nor
// fail when the API server is unreachable: they retry with backoff, and each component that
// uses them reports what it is missing.
func (e *Inventory) Start(_ context.Context, _ component.Host) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inf != nil || e.cfg.AuthType == k8sinventory.AuthTypeNone {
		if e.cfg.AuthType == k8sinventory.AuthTypeNone {
			e.logger.Info("k8s_inventory: auth_type none, no Kubernetes API: no pods are watched")
		}
		return nil
	}
	client := e.client
	if client == nil {
		var err error
		if client, err = k8sinventory.NewClient(e.cfg.AuthType, e.cfg.KubeConfig, userAgent); err != nil {
			return err
		}
	}
	e.nodeName = e.cfg.NodeName
	if e.nodeName == "" && e.cfg.NodeNameEnv != "" {
		e.nodeName = os.Getenv(e.cfg.NodeNameEnv)
	}
	inf, err := k8sinventory.New(client, e.nodeName, e.cfg.ResyncPeriod, e.logger)
	if err != nil {
		return err
	}
	// The informers live until Shutdown, not the Start context.
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	inf.Run(ctx, &e.wg)
	e.inf = inf
	if e.nodeName != "" {
		e.logger.Info("k8s_inventory: watching the pods of this node", zap.String("node", e.nodeName))
	} else {
		e.logger.Info("k8s_inventory: watching the pods of all nodes (no node_name and $" + e.cfg.NodeNameEnv + " is empty)")
	}
	return nil
}

// Informers returns the running informers, nil before Start and after Shutdown.
func (e *Inventory) Informers() *k8sinventory.Informers {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inf
}

// HasAPI is false with auth_type none: there are no informers, and components work without the
// Kubernetes API.
func (e *Inventory) HasAPI() bool { return e.cfg.AuthType != k8sinventory.AuthTypeNone }

// NodeName is the node whose pods are watched ("" for all).
func (e *Inventory) NodeName() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nodeName
}

// Shutdown stops the informers and waits for them. Idempotent, safe without Start.
func (e *Inventory) Shutdown(context.Context) error {
	e.mu.Lock()
	cancel := e.cancel
	e.cancel = nil
	e.inf = nil
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	e.wg.Wait()
	return nil
}
