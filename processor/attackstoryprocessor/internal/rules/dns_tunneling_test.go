package rules

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The fixtures the thresholds of dns_tunneling are tuned on: names of real services (CDNs,
// clouds, mail, telemetry) must not look random; data encoded the ways DNS tunnelling tools
// encode it (base32 as iodine and dnscat2's, hex, base64url) must.
func TestDNSRandomName(t *testing.T) {
	benign := []string{
		"api.openai.com", "www.google.com", "d1a2b3c4d5e6f7.cloudfront.net",
		"e12345.dscb.akamaiedge.net", "ec2-54-123-45-67.compute-1.amazonaws.com",
		"rr4---sn-4g5e6nsz.googlevideo.com", "customer-data-export-staging.internal.example.com",
		"prod-eu-west-1-ingest.logs.datadoghq.eu", "_dmarc.example.co.uk",
		"accounts-summary-service.bank.example", "s3.eu-central-1.amazonaws.com",
		"github-production-release-asset-2e65be.s3.amazonaws.com", "login.microsoftonline.com",
		"storage.googleapis.com", "xn--mnchen-3ya.de", "my-very-long-application-hostname.herokuapp.com",
	}
	for _, n := range benign {
		_, random := dnsRandomName(n)
		assert.False(t, random, n)
	}
	secret := []byte("4111 1111 1111 1111;SSN 078-05-1120;name=Jane Doe;")
	b32 := strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(secret), "="))
	encoded := []string{
		b32[:40] + ".t.exfil-example.net",
		hex.EncodeToString(secret)[:48] + ".exfil-example.net",
		base64.RawURLEncoding.EncodeToString(secret)[:40] + ".x.exfil-example.co.uk",
		b32[40:63] + "." + b32[:30] + ".exfil-example.net",
	}
	for _, n := range encoded {
		domain, random := dnsRandomName(n)
		assert.True(t, random, n)
		assert.Contains(t, []string{"exfil-example.net", "exfil-example.co.uk"}, domain, n)
	}
}
