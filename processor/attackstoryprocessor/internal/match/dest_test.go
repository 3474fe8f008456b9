package match

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		entry string
		addr  string
		port  int
		host  string
		want  bool
	}{
		{"127.0.0.1:18443", "127.0.0.1", 18443, "", true},
		{"127.0.0.1:18443", "127.0.0.1", 443, "", false},
		{"127.0.0.1:18443", "127.0.0.2", 18443, "", false},
		{"127.0.0.1", "127.0.0.1", 5, "", true},
		{"10.0.0.0/8", "10.200.1.1", 443, "", true},
		{"10.0.0.0/8", "11.0.0.1", 443, "", false},
		{"10.0.0.0/8:5432", "10.0.0.9", 5432, "", true},
		{"10.0.0.0/8:5432", "10.0.0.9", 5433, "", false},
		{"[::1]:443", "::1", 443, "", true},
		{"fd00::/8", "fd12::1", 80, "", true},
		{"fd00::/8:443", "fd12::1", 443, "", true},
		{"api.example.com:443", "203.0.113.9", 443, "api.example.com", true},
		{"api.example.com:443", "203.0.113.9", 443, "", false},
		{"*.example.com", "203.0.113.9", 8443, "eu.api.example.com", true},
		{"*.example.com", "203.0.113.9", 8443, "example.org", false},
		{"*:443", "198.51.100.1", 443, "", true},
		{"*:443", "198.51.100.1", 80, "", false},
	} {
		d, err := ParseDest(tc.entry)
		require.NoError(t, err, tc.entry)
		addr, _ := netipParse(tc.addr)
		assert.Equal(t, tc.want, d.Matches(addr, tc.port, tc.host), "%s vs %s:%d %s", tc.entry, tc.addr, tc.port, tc.host)
	}
	for _, bad := range []string{"", "*", "10.0.0.0/40", "host:0", "bad host", "1.2.3.4:70000"} {
		_, err := ParseDest(bad)
		assert.Error(t, err, bad)
	}
}
