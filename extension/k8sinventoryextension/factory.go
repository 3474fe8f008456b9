package k8sinventoryextension

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"k8s.io/client-go/kubernetes"

	"github.com/agenttrail/agenttrail/extension/k8sinventoryextension/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

// NewFactory returns the factory of the k8s_inventory extension.
func NewFactory() extension.Factory { return newFactory(nil) }

// newFactory injects a client (the fake clientset of the tests); nil builds one at Start.
func newFactory(client kubernetes.Interface) extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig,
		func(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
			return newInventory(set, cfg.(*Config), client), nil
		},
		metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		AuthType:     k8sinventory.AuthTypeServiceAccount,
		NodeNameEnv:  "K8S_NODE_NAME",
		ResyncPeriod: 5 * time.Minute,
	}
}
