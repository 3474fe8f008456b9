package k8sinventoryextension

import (
	"fmt"
	"regexp"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

// Config of the k8s_inventory extension. Every key is documented in README.md.
type Config struct {
	// AuthType selects how the Kubernetes API is reached: serviceAccount (in-cluster config,
	// the default), kubeConfig, or none (no API and no informers: one configuration serves
	// hosts without Kubernetes too).
	AuthType string `mapstructure:"auth_type"`
	// KubeConfig is the kubeconfig file for auth_type kubeConfig; empty means $KUBECONFIG,
	// else ~/.kube/config.
	KubeConfig string `mapstructure:"kubeconfig"`
	// NodeName restricts the pod informer to the pods of this node (spec.nodeName). Empty means
	// the environment variable named by NodeNameEnv, and when that is empty too, every node.
	NodeName string `mapstructure:"node_name"`
	// NodeNameEnv names the environment variable read when NodeName is empty.
	NodeNameEnv string `mapstructure:"node_name_env"`
	// ResyncPeriod of the informers; 0 disables periodic resyncs.
	ResyncPeriod time.Duration `mapstructure:"resync_period"`
}

var _ component.Config = (*Config)(nil)

var (
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envVarName   = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

// Validate checks the config without touching the system; it stops at the first problem.
func (cfg *Config) Validate() error {
	switch cfg.AuthType {
	case k8sinventory.AuthTypeServiceAccount, k8sinventory.AuthTypeKubeConfig, k8sinventory.AuthTypeNone:
	default:
		return fmt.Errorf(`"auth_type" must be one of %q, %q, %q; got %q`,
			k8sinventory.AuthTypeServiceAccount, k8sinventory.AuthTypeKubeConfig, k8sinventory.AuthTypeNone, cfg.AuthType)
	}
	if cfg.KubeConfig != "" && cfg.AuthType != k8sinventory.AuthTypeKubeConfig {
		return fmt.Errorf(`"kubeconfig" is only used with "auth_type: %s" (auth_type is %q)`, k8sinventory.AuthTypeKubeConfig, cfg.AuthType)
	}
	if cfg.NodeName != "" && !dnsSubdomain.MatchString(cfg.NodeName) {
		return fmt.Errorf(`"node_name" must be a node name (lowercase DNS subdomain), got %q`, cfg.NodeName)
	}
	if cfg.NodeNameEnv != "" && !envVarName.MatchString(cfg.NodeNameEnv) {
		return fmt.Errorf(`"node_name_env" must be an environment variable name, got %q`, cfg.NodeNameEnv)
	}
	if cfg.ResyncPeriod < 0 {
		return fmt.Errorf(`"resync_period" must not be negative, got %v`, cfg.ResyncPeriod)
	}
	return nil
}
