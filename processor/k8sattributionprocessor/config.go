package k8sattributionprocessor

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Authentication modes of auth_type.
const (
	AuthTypeServiceAccount = "serviceAccount"
	AuthTypeKubeConfig     = "kubeConfig"
	AuthTypeNone           = "none"
)

// maxWaitForMetadata bounds wait_for_metadata: a batch holding an unknown
// container id stalls its pipeline for that long.
const maxWaitForMetadata = time.Minute

// Config of the k8sattribution processor. Every key is documented in README.md.
type Config struct {
	// AuthType selects how the Kubernetes API is reached: serviceAccount
	// (in-cluster config, the default), kubeConfig, or none (no API: only the
	// cgroup and the attributes already on the resource are used).
	AuthType string `mapstructure:"auth_type"`
	// KubeConfig is the kubeconfig file for auth_type kubeConfig; empty means
	// $KUBECONFIG, else ~/.kube/config.
	KubeConfig string `mapstructure:"kubeconfig"`
	// NodeName restricts the pod informer to the pods of this node
	// (spec.nodeName). Empty means the value of the environment variable
	// named by NodeNameEnv, and when that is empty too, pods of all nodes.
	NodeName string `mapstructure:"node_name"`
	// NodeNameEnv names the environment variable read when NodeName is empty.
	NodeNameEnv string `mapstructure:"node_name_env"`
	// ProcRoot is where the host's /proc is mounted (/host/proc in the
	// DaemonSet); read when a resource has process.pid but no container.id.
	ProcRoot string `mapstructure:"proc_root"`
	// WaitForMetadata is the longest a batch waits for the pod informer to
	// learn a container it does not know yet; 0 never waits.
	WaitForMetadata time.Duration `mapstructure:"wait_for_metadata"`
	// ResyncPeriod of the informers; 0 disables periodic resyncs.
	ResyncPeriod time.Duration `mapstructure:"resync_period"`
	// PIDCacheSize bounds the pid → attribution cache (entries).
	PIDCacheSize int `mapstructure:"pid_cache_size"`
	// Extract names the pod labels and annotations copied to the resource.
	Extract ExtractConfig `mapstructure:"extract"`
	// Passthrough (gateway mode) never reads /proc and uses only container.id
	// and k8s.pod.uid already on the resource.
	Passthrough bool `mapstructure:"passthrough"`
	// HostName is host.name of processes outside any pod; empty means
	// os.Hostname().
	HostName string `mapstructure:"host_name"`
	// Inventory names a k8s_inventory extension whose informers the processor uses instead of
	// running its own (one pod cache per node, shared with the eBPF receiver's Kubernetes
	// targets). auth_type, kubeconfig and resync_period are then the extension's (an extension
	// with auth_type none has no informers: the processor then works as with auth_type none).
	Inventory *component.ID `mapstructure:"inventory"`
}

// ExtractConfig lists pod labels and annotations to copy to the resource.
type ExtractConfig struct {
	Labels      []FieldExtractConfig `mapstructure:"labels"`
	Annotations []FieldExtractConfig `mapstructure:"annotations"`
}

// FieldExtractConfig copies one label or annotation.
type FieldExtractConfig struct {
	// Key of the label or annotation, e.g. app.kubernetes.io/name.
	Key string `mapstructure:"key"`
	// TagName is the resource attribute; empty means k8s.pod.label.<key> or
	// k8s.pod.annotation.<key>.
	TagName string `mapstructure:"tag_name"`
}

var _ component.Config = (*Config)(nil)

// qualifiedName is a Kubernetes label or annotation key: an optional DNS
// subdomain prefix and "/", then a name of at most 63 characters that starts
// and ends with an alphanumeric character.
var (
	qualifiedNamePart = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	dnsSubdomain      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envVarName        = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

// Validate checks the config without touching the system (no environment,
// file or network access); it stops at the first problem.
func (cfg *Config) Validate() error {
	switch cfg.AuthType {
	case AuthTypeServiceAccount, AuthTypeKubeConfig, AuthTypeNone:
	default:
		return fmt.Errorf(`"auth_type" must be one of %q, %q, %q; got %q`, AuthTypeServiceAccount, AuthTypeKubeConfig, AuthTypeNone, cfg.AuthType)
	}
	if cfg.Inventory != nil && cfg.Passthrough {
		return errors.New(`"inventory" is for the agent: a "passthrough" gateway reads no pods`)
	}
	if cfg.KubeConfig != "" && cfg.AuthType != AuthTypeKubeConfig {
		return fmt.Errorf(`"kubeconfig" is only used with "auth_type: %s" (auth_type is %q)`, AuthTypeKubeConfig, cfg.AuthType)
	}
	if cfg.NodeName != "" && !dnsSubdomain.MatchString(cfg.NodeName) {
		return fmt.Errorf(`"node_name" must be a node name (lowercase DNS subdomain), got %q`, cfg.NodeName)
	}
	if cfg.NodeNameEnv != "" && !envVarName.MatchString(cfg.NodeNameEnv) {
		return fmt.Errorf(`"node_name_env" must be an environment variable name, got %q`, cfg.NodeNameEnv)
	}
	if !cfg.Passthrough && !strings.HasPrefix(cfg.ProcRoot, "/") {
		return fmt.Errorf(`"proc_root" must be an absolute path, got %q`, cfg.ProcRoot)
	}
	if cfg.WaitForMetadata < 0 || cfg.WaitForMetadata > maxWaitForMetadata {
		return fmt.Errorf(`"wait_for_metadata" must be between 0s and %v, got %v`, maxWaitForMetadata, cfg.WaitForMetadata)
	}
	if cfg.ResyncPeriod < 0 {
		return fmt.Errorf(`"resync_period" must not be negative, got %v`, cfg.ResyncPeriod)
	}
	if cfg.PIDCacheSize <= 0 {
		return fmt.Errorf(`"pid_cache_size" must be positive, got %d`, cfg.PIDCacheSize)
	}
	tags := map[string]string{}
	for _, f := range []struct {
		name   string
		prefix string
		list   []FieldExtractConfig
	}{
		{"labels", labelPrefix, cfg.Extract.Labels},
		{"annotations", annotationPrefix, cfg.Extract.Annotations},
	} {
		for i, e := range f.list {
			where := fmt.Sprintf(`"extract.%s[%d]"`, f.name, i)
			if e.Key == "" {
				return fmt.Errorf(`%s: "key" must not be empty`, where)
			}
			if !isQualifiedName(e.Key) {
				return fmt.Errorf(`%s: "key" %q is not a valid Kubernetes key ([prefix/]name, name at most 63 characters of [-A-Za-z0-9_.])`, where, e.Key)
			}
			tag := e.TagName
			if tag == "" {
				tag = f.prefix + e.Key
			} else if strings.TrimSpace(tag) != tag || strings.ContainsAny(tag, " \t\r\n") {
				return fmt.Errorf(`%s: "tag_name" %q must not contain white space`, where, tag)
			}
			if reservedAttributes[tag] {
				return fmt.Errorf(`%s: "tag_name" %q is an attribute this processor sets itself`, where, tag)
			}
			if prev, dup := tags[tag]; dup {
				return fmt.Errorf(`%s: resource attribute %q is also written by %s`, where, tag, prev)
			}
			tags[tag] = where
		}
	}
	return nil
}

func isQualifiedName(key string) bool {
	prefix, name, found := strings.Cut(key, "/")
	if found {
		if prefix == "" || len(prefix) > 253 || !dnsSubdomain.MatchString(prefix) {
			return false
		}
	} else {
		name = prefix
	}
	return qualifiedNamePart.MatchString(name)
}
