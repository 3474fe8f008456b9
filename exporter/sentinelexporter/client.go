package sentinelexporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/ingestion/azlogs"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

const (
	// applicationID is added to the SDK's User-Agent (at most 24 characters, no spaces).
	applicationID = "AgentTrail"
	// maxExcerpt bounds the excerpt of a response body quoted in an error.
	maxExcerpt = 200
	// authHoldDuration is how long a rejected credential is not tried again: every export in
	// that window fails at once, without a token request to Entra ID.
	authHoldDuration = 30 * time.Second
)

// newCredential builds the Entra ID credential of auth.type. Retries of token requests stay
// with the SDK (azidentity's defaults, bounded by the export timeout) unless turned off for tests.
func newCredential(cfg *Config, transport policy.Transporter, opts factoryOptions) (azcore.TokenCredential, error) {
	a := &cfg.Auth
	co := azcore.ClientOptions{
		Transport: transport,
		Telemetry: policy.TelemetryOptions{ApplicationID: applicationID},
	}
	if opts.noCredentialRetries {
		co.Retry = policy.RetryOptions{MaxRetries: -1}
	}
	switch {
	case a.AuthorityHost != "":
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: a.AuthorityHost}
	case cfg.Cloud != cloudPublic:
		co.Cloud = cloudConfigs[cfg.Cloud]
	}
	// A custom authority is not one MSAL knows: skip instance discovery, which would otherwise
	// ask login.microsoftonline.com to validate it.
	noDiscovery := a.AuthorityHost != ""

	switch a.Type {
	case AuthClientSecret:
		return azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, string(a.ClientSecret),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: noDiscovery})
	case AuthWorkloadIdentity:
		tenant, client, file := workloadIdentityValues(a)
		switch {
		case tenant == "":
			return nil, fmt.Errorf(`"auth.tenant_id" is empty and %s is not set`, envTenantID)
		case client == "":
			return nil, fmt.Errorf(`"auth.client_id" is empty and %s is not set`, envClientID)
		case file == "":
			return nil, fmt.Errorf(`"auth.token_file" is empty and %s is not set`, envFederatedTokenFile)
		}
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf(`service account token file %q: %w`, file, err)
		}
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            co,
			TenantID:                 tenant,
			ClientID:                 client,
			TokenFilePath:            file,
			DisableInstanceDiscovery: noDiscovery,
		})
	case AuthManagedIdentity:
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: azcore.ClientOptions{
			Transport: transport,
			Telemetry: co.Telemetry,
			Retry:     co.Retry, // zero: azidentity's IMDS retry defaults
		}}
		switch {
		case a.ClientID != "":
			mo.ID = azidentity.ClientID(a.ClientID)
		case a.ResourceID != "":
			mo.ID = azidentity.ResourceID(a.ResourceID)
		}
		return azidentity.NewManagedIdentityCredential(mo)
	}
	return nil, fmt.Errorf("unknown auth type %q", a.Type)
}

func workloadIdentityValues(a *AuthConfig) (tenant, client, file string) {
	tenant, client, file = a.TenantID, a.ClientID, a.TokenFile
	if tenant == "" {
		tenant = os.Getenv(envTenantID)
	}
	if client == "" {
		client = os.Getenv(envClientID)
	}
	if file == "" {
		file = os.Getenv(envFederatedTokenFile)
	}
	return tenant, client, file
}

// newIngestionClient builds the azlogs client. The SDK's retry policy is off (one try per
// Upload): exporterhelper's retry_on_failure and sending_queue are the only retry layer, so a
// 429 is not retried twice and Retry-After reaches the queue.
func newIngestionClient(cfg *Config, cred azcore.TokenCredential, transport policy.Transporter) (*azlogs.Client, error) {
	return azlogs.NewClient(cfg.Endpoint, cred, &azlogs.ClientOptions{ClientOptions: azcore.ClientOptions{
		Cloud:     cloudConfigs[cfg.Cloud],
		Transport: transport,
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Telemetry: policy.TelemetryOptions{ApplicationID: applicationID},
	}})
}

// describeIdentity names the credential for error messages: type, tenant and client ids,
// never the secret.
func describeIdentity(a *AuthConfig) string {
	switch a.Type {
	case AuthClientSecret:
		return fmt.Sprintf("client_secret credential (tenant %q, client %q)", a.TenantID, a.ClientID)
	case AuthWorkloadIdentity:
		tenant, client, file := workloadIdentityValues(a)
		return fmt.Sprintf("workload_identity credential (tenant %q, client %q, token file %q)", tenant, client, file)
	case AuthManagedIdentity:
		switch {
		case a.ClientID != "":
			return fmt.Sprintf("managed_identity credential (user-assigned, client %q)", a.ClientID)
		case a.ResourceID != "":
			return fmt.Sprintf("managed_identity credential (user-assigned, resource %q)", a.ResourceID)
		}
		return "managed_identity credential (system-assigned)"
	}
	return a.Type + " credential"
}

func effectiveAuthority(cfg *Config) string {
	switch {
	case cfg.Auth.Type == AuthManagedIdentity:
		return "the managed identity endpoint"
	case cfg.Auth.AuthorityHost != "":
		return cfg.Auth.AuthorityHost
	case cfg.Cloud != cloudPublic:
		return cloudConfigs[cfg.Cloud].ActiveDirectoryAuthorityHost
	case os.Getenv("AZURE_AUTHORITY_HOST") != "":
		return os.Getenv("AZURE_AUTHORITY_HOST")
	}
	return cloud.AzurePublic.ActiveDirectoryAuthorityHost
}

// classify turns an Upload error into one single-line error: permanent (consumererror), throttled
// (exporterhelper.NewThrottleRetry with the service's delay), too large (split) or retryable.
// exporterhelper logs it once; it never contains the client secret.
func (e *sentinelExporter) classify(err error) error {
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		return e.credentialError(authErr)
	}
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return e.responseError(respErr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sentinel: POST %s%s: %w [retryable]", redactedEndpoint(e.cfg.Endpoint), e.path, err)
	}
	// Transport errors, and credentials that cannot get a token right now (e.g. no managed
	// identity endpoint reachable): retryable.
	return fmt.Errorf("sentinel: POST %s%s with the %s: %s [retryable]",
		redactedEndpoint(e.cfg.Endpoint), e.path, e.identity, e.oneLine(err.Error(), 400))
}

// credentialError reports a failed token request. An answer of Entra ID in the 4xx range (bad
// secret, unknown client or tenant, expired federated token...) is permanent and held for
// authHoldDuration; no answer or a 5xx is retryable.
func (e *sentinelExporter) credentialError(authErr *azidentity.AuthenticationFailedError) error {
	status := 0
	var detail string
	if resp := authErr.RawResponse; resp != nil {
		status = resp.StatusCode
		body, _ := runtime.Payload(resp)
		detail = entraDetail(body)
		if detail == "" {
			detail = e.describeBody(resp, body)
		}
		detail = fmt.Sprintf("HTTP %d %s: %s", status, http.StatusText(status), e.redact(detail))
	} else {
		detail = e.oneLine(authErr.Error(), 400)
	}
	msg := fmt.Sprintf("sentinel: Microsoft Entra ID (%s) issued no token for the %s: %s", e.authority, e.identity, detail)
	if status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests {
		err := errors.New(msg + " [permanent, data dropped; fix the credential]")
		e.auth.hold(err)
		return consumererror.NewPermanent(err)
	}
	return errors.New(msg + " [retryable]")
}

// entraDetail extracts "error: first line of error_description" from an OAuth error body.
func entraDetail(body []byte) string {
	var r struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &r) != nil || r.Error == "" {
		return ""
	}
	desc := r.Description
	if i := strings.IndexAny(desc, "\r\n"); i >= 0 {
		desc = desc[:i] // drop the Trace ID / Correlation ID / Timestamp lines
	}
	if desc == "" {
		return r.Error
	}
	return r.Error + ": " + desc
}

// responseError classifies an answer of the Logs Ingestion endpoint other than 204.
func (e *sentinelExporter) responseError(respErr *azcore.ResponseError) error {
	status := respErr.StatusCode
	resp := respErr.RawResponse
	var body []byte
	if resp != nil {
		body, _ = runtime.Payload(resp)
	}
	detail := e.redact(e.describeBody(resp, body))
	msg := fmt.Sprintf("sentinel: Logs Ingestion API answered POST %s with HTTP %d %s: %s",
		e.path, status, http.StatusText(status), detail)
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return &exporterkit.TooLargeError{Err: errors.New(msg)} // the batcher splits the request
	case status == http.StatusUnauthorized:
		return consumererror.NewPermanent(fmt.Errorf("%s; the token of the %s was not accepted [permanent, data dropped]", msg, e.identity))
	case status == http.StatusForbidden:
		return consumererror.NewPermanent(fmt.Errorf(`%s; the %s needs the "Monitoring Metrics Publisher" role on the data collection rule (assignments take up to 30 minutes to apply) [permanent, data dropped]`, msg, e.identity))
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		err := errors.New(msg + " [retryable]")
		if resp != nil {
			if delay, ok := retryAfter(resp.Header); ok {
				return exporterhelper.NewThrottleRetry(err, delay)
			}
		}
		return err
	case status >= 500 || status == http.StatusRequestTimeout:
		return errors.New(msg + " [retryable]")
	case status >= 200 && status < 300:
		return consumererror.NewPermanent(fmt.Errorf(`%s; the Logs Ingestion API answers 204: check that "endpoint" is the logs ingestion endpoint of the DCE or DCR [permanent, data dropped]`, msg))
	default:
		return consumererror.NewPermanent(errors.New(msg + " [permanent, data dropped]"))
	}
}

// describeBody summarizes a response body in one line: the service's JSON error
// ({"error":{"code","message"}}), or a sanitized excerpt of anything else (an HTML page from a
// proxy or a wrong endpoint).
func (e *sentinelExporter) describeBody(resp *http.Response, body []byte) string {
	if len(strings.TrimSpace(string(body))) == 0 {
		return "empty response body"
	}
	var r struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &r) == nil && r.Error != nil && (r.Error.Code != "" || r.Error.Message != "") {
		s := r.Error.Code
		if r.Error.Message != "" {
			if s != "" {
				s += ": "
			}
			s += e.oneLine(r.Error.Message, 400)
		}
		return s
	}
	ct := ""
	if resp != nil {
		ct = resp.Header.Get("Content-Type")
	}
	trimmed := strings.TrimSpace(string(body))
	if strings.Contains(strings.ToLower(ct), "html") || strings.HasPrefix(trimmed, "<") {
		return fmt.Sprintf(`HTML response, not the Logs Ingestion API (is "endpoint" the DCE/DCR logs ingestion endpoint, or is a proxy answering?): %q`,
			e.oneLine(htmlText(trimmed), maxExcerpt))
	}
	return fmt.Sprintf("non-JSON response: %q", e.oneLine(trimmed, maxExcerpt))
}

// htmlText keeps the text of an HTML page: tags, scripts and styles removed, entities decoded.
func htmlText(s string) string {
	var b strings.Builder
	lower := strings.ToLower(s)
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		for _, blk := range []string{"script", "style"} {
			if strings.HasPrefix(lower[i+1:], blk) {
				if end := strings.Index(lower[i:], "</"+blk); end >= 0 {
					i += end
				}
			}
		}
		end := strings.IndexByte(s[i:], '>')
		if end < 0 {
			break
		}
		i += end + 1
		b.WriteByte(' ')
	}
	return html.UnescapeString(b.String())
}

// oneLine returns s as one printable line of at most limit bytes, without the client secret.
func (e *sentinelExporter) oneLine(s string, limit int) string {
	return exporterkit.OneLine(s, limit, "…", e.redact)
}

func (e *sentinelExporter) redact(s string) string {
	if e.secret == "" {
		return s
	}
	return strings.ReplaceAll(s, e.secret, "[REDACTED]")
}

// retryAfter reads the delay the service asks for: retry-after-ms / x-ms-retry-after-ms
// (milliseconds) or Retry-After (seconds or an HTTP date).
func retryAfter(h http.Header) (time.Duration, bool) {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms >= 0 {
				return time.Duration(ms) * time.Millisecond, true
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(max(secs, 0)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// authHold remembers a permanent credential failure for authHoldDuration, so that a bad secret
// costs one token request per window instead of one per export.
type authHold struct {
	mu    sync.Mutex
	err   error
	until time.Time
}

func (h *authHold) hold(err error) {
	h.mu.Lock()
	h.err, h.until = err, now().Add(authHoldDuration)
	h.mu.Unlock()
}

func (h *authHold) held() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil || !now().Before(h.until) {
		return nil
	}
	return consumererror.NewPermanent(fmt.Errorf("%w (token request not repeated before %s)", h.err, h.until.UTC().Format(time.RFC3339)))
}
