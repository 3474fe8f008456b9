package sentinelexporter

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

const (
	// maxBatchBytesLimit is the Logs Ingestion API limit of one call (1 MiB).
	maxBatchBytesLimit = 1 << 20
	// defaultMaxBatchBytes leaves headroom under the service limit.
	defaultMaxBatchBytes = 1_000_000
	// minBatchBytes keeps a batch large enough to hold a realistic row.
	minBatchBytes = 1024

	defaultStreamFindings = "Custom-AgentTrailFindings_CL"
	defaultStreamSpans    = "Custom-AgentTrailSpans_CL"
	defaultTimeout        = 30 * time.Second
	defaultCloud          = cloudPublic

	// Azure CLI names of the clouds (`az cloud list`).
	cloudPublic     = "AzureCloud"
	cloudGovernment = "AzureUSGovernment"
	cloudChina      = "AzureChinaCloud"

	// Environment variables set by the Azure Workload Identity webhook.
	envFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
	envTenantID           = "AZURE_TENANT_ID"
	envClientID           = "AZURE_CLIENT_ID"
)

// Auth types.
const (
	AuthClientSecret     = "client_secret"
	AuthWorkloadIdentity = "workload_identity"
	AuthManagedIdentity  = "managed_identity"
)

var (
	// dcrIDPattern is the shape of a data collection rule immutable id: "dcr-" and 32 hex digits.
	dcrIDPattern = regexp.MustCompile(`^dcr-[0-9a-fA-F]{32}$`)
	// streamPattern: a DCR stream declaration name ("Custom-" and letters, digits, '_' or '-').
	streamPattern = regexp.MustCompile(`^Custom-[A-Za-z0-9_\-]{1,200}$`)
	// tenantPattern accepts what azidentity accepts: a GUID or a domain name.
	tenantPattern = regexp.MustCompile(`^[A-Za-z0-9.\-]{1,256}$`)
)

// AuthConfig selects and configures the Microsoft Entra ID credential.
type AuthConfig struct {
	// Type is client_secret, workload_identity or managed_identity.
	Type string `mapstructure:"type"`
	// TenantID is the Entra tenant (client_secret; workload_identity defaults to AZURE_TENANT_ID).
	TenantID string `mapstructure:"tenant_id"`
	// ClientID is the application (client) id: of the app registration (client_secret), of the
	// federated identity (workload_identity, defaults to AZURE_CLIENT_ID) or of a user-assigned
	// managed identity (managed_identity; empty selects the system-assigned identity).
	ClientID string `mapstructure:"client_id"`
	// ClientSecret is the app registration's secret (client_secret). Never logged.
	ClientSecret configopaque.String `mapstructure:"client_secret"`
	// TokenFile is the projected service account token (workload_identity); defaults to
	// AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string `mapstructure:"token_file"`
	// AuthorityHost overrides the Entra authority, e.g. https://login.microsoftonline.us/.
	// Default: the cloud's authority (AZURE_AUTHORITY_HOST when set and cloud is AzureCloud).
	AuthorityHost string `mapstructure:"authority_host"`
	// ResourceID is the ARM resource id of a user-assigned managed identity (managed_identity),
	// as an alternative to ClientID.
	ResourceID string `mapstructure:"resource_id"`
}

// Config defines the configuration of the Microsoft Sentinel exporter.
type Config struct {
	// TimeoutConfig bounds one export call (every request it makes, token acquisition included).
	TimeoutConfig exporterhelper.TimeoutConfig `mapstructure:",squash"`
	// QueueSettings is the exporterhelper sending queue (in-memory or persistent via "storage").
	QueueSettings configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	// BackOffConfig is the exporterhelper retry policy: the only retry layer for ingestion.
	BackOffConfig configretry.BackOffConfig `mapstructure:"retry_on_failure"`

	// Endpoint is the logs ingestion endpoint of the data collection endpoint (DCE) or of a
	// Direct data collection rule, e.g. https://agenttrail-dce-a1b2.westeurope-1.ingest.monitor.azure.com.
	Endpoint string `mapstructure:"endpoint"`
	// DCRImmutableID is the immutableId of the data collection rule (dcr-<32 hex>).
	DCRImmutableID string `mapstructure:"dcr_immutable_id"`
	// StreamNameFindings is the DCR stream that receives findings (logs signal).
	StreamNameFindings string `mapstructure:"stream_name_findings"`
	// StreamNameSpans is the DCR stream that receives spans (traces signal).
	StreamNameSpans string `mapstructure:"stream_name_spans"`
	// Cloud is the Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud. It selects
	// the token audience of the Logs Ingestion API and the default Entra authority.
	Cloud string `mapstructure:"cloud"`
	// Auth configures the credential.
	Auth AuthConfig `mapstructure:"auth"`
	// MaxBatchBytes bounds the uncompressed JSON array of one request (service limit: 1 MiB).
	MaxBatchBytes int `mapstructure:"max_batch_bytes"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration and returns the first problem found. It does not modify cfg.
// Values that workload identity may take from the environment are checked in Start.
func (cfg *Config) Validate() error {
	if cfg.Endpoint == "" {
		return errors.New(`"endpoint" must not be empty`)
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return fmt.Errorf(`"endpoint" must be a valid URL: %w`, err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf(`"endpoint" must be an https:// URL (the Logs Ingestion API only accepts TLS), got scheme %q`, u.Scheme)
	}
	if u.Host == "" {
		return errors.New(`"endpoint" must include a host`)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New(`"endpoint" must not carry user info, a query or a fragment`)
	}
	if cfg.DCRImmutableID == "" {
		return errors.New(`"dcr_immutable_id" must not be empty`)
	}
	if !dcrIDPattern.MatchString(cfg.DCRImmutableID) {
		return fmt.Errorf(`"dcr_immutable_id" must be the rule's immutableId, "dcr-" followed by 32 hex digits, got %q`, cfg.DCRImmutableID)
	}
	for _, s := range []struct{ key, value string }{
		{"stream_name_findings", cfg.StreamNameFindings},
		{"stream_name_spans", cfg.StreamNameSpans},
	} {
		if !streamPattern.MatchString(s.value) {
			return fmt.Errorf(`"%s" must be a DCR stream name starting with "Custom-", got %q`, s.key, s.value)
		}
	}
	if _, ok := cloudConfigs[cfg.Cloud]; !ok {
		return fmt.Errorf(`"cloud" must be one of %s, %s, %s, got %q`, cloudPublic, cloudGovernment, cloudChina, cfg.Cloud)
	}
	if cfg.MaxBatchBytes < minBatchBytes || cfg.MaxBatchBytes > maxBatchBytesLimit {
		return fmt.Errorf(`"max_batch_bytes" must be between %d and %d (the Logs Ingestion API limit of 1 MiB), got %d`,
			minBatchBytes, maxBatchBytesLimit, cfg.MaxBatchBytes)
	}
	if cfg.TimeoutConfig.Timeout < 0 {
		return fmt.Errorf(`"timeout" must not be negative, got %s`, cfg.TimeoutConfig.Timeout)
	}
	return cfg.Auth.validate()
}

func (a *AuthConfig) validate() error {
	if a.AuthorityHost != "" {
		u, err := url.Parse(a.AuthorityHost)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf(`"auth.authority_host" must be an https:// URL, got %q`, a.AuthorityHost)
		}
	}
	if a.TenantID != "" && !tenantPattern.MatchString(a.TenantID) {
		return fmt.Errorf(`"auth.tenant_id" must be a tenant GUID or domain name, got %q`, a.TenantID)
	}
	notWith := func(key string, set bool) error {
		if set {
			return fmt.Errorf(`"auth.%s" does not apply to "auth.type: %s"`, key, a.Type)
		}
		return nil
	}
	switch a.Type {
	case AuthClientSecret:
		if a.TenantID == "" {
			return errors.New(`"auth.tenant_id" must not be empty with "auth.type: client_secret"`)
		}
		if a.ClientID == "" {
			return errors.New(`"auth.client_id" must not be empty with "auth.type: client_secret"`)
		}
		if a.ClientSecret == "" {
			return errors.New(`"auth.client_secret" must not be empty with "auth.type: client_secret"`)
		}
		return errors.Join(notWith("token_file", a.TokenFile != ""), notWith("resource_id", a.ResourceID != ""))
	case AuthWorkloadIdentity:
		return errors.Join(notWith("client_secret", a.ClientSecret != ""), notWith("resource_id", a.ResourceID != ""))
	case AuthManagedIdentity:
		if a.ClientID != "" && a.ResourceID != "" {
			return errors.New(`set at most one of "auth.client_id" and "auth.resource_id" with "auth.type: managed_identity"`)
		}
		return errors.Join(
			notWith("client_secret", a.ClientSecret != ""),
			notWith("token_file", a.TokenFile != ""),
			notWith("tenant_id", a.TenantID != ""),
			notWith("authority_host", a.AuthorityHost != ""),
		)
	case "":
		return fmt.Errorf(`"auth.type" must be set: %s, %s or %s`, AuthClientSecret, AuthWorkloadIdentity, AuthManagedIdentity)
	default:
		return fmt.Errorf(`"auth.type" must be one of %s, %s, %s, got %q`, AuthClientSecret, AuthWorkloadIdentity, AuthManagedIdentity, a.Type)
	}
}

// cloudConfigs maps the "cloud" values to the SDK's cloud configurations (shared, never modified).
var cloudConfigs = map[string]cloud.Configuration{
	cloudPublic:     cloud.AzurePublic,
	cloudGovernment: cloud.AzureGovernment,
	cloudChina:      cloud.AzureChina,
}

// redactedEndpoint is safe to log: scheme, host and path only.
func redactedEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid endpoint>"
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/")
}
