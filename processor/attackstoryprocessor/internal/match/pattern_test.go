package match

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func netipParse(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

func TestPathPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"*/customers.*", "/srv/bank/customers.csv", true},
		{"*/customers.*", "/customers.db", true},
		{"*/customers.*", "/srv/bank/customers", false},
		{"*/customers.*", "/srv/bank/old-customers.csv", false},
		{"*.db", "/var/lib/app/data.db", true},
		{"*.db", "/var/lib/app/data.db-wal", false},
		{"*/secrets/*", "/run/secrets/api-token", true},
		{"*/secrets/*", "/run/secrets", false},
		{"/etc/shadow", "/etc/shadow", true},
		{"/etc/shadow", "/etc/shadow-", false},
		{"/data/**", "/data/a/b/c.json", true},
		{"/data/**", "/database", false},
		{"/proc/*/status", "/proc/1234/status", true},
		{"/proc/*/status", "/proc/1234/task/5/status", true},
		{"/tmp/upload-?.bin", "/tmp/upload-7.bin", true},
		{"/tmp/upload-?.bin", "/tmp/upload-77.bin", false},
		{"*", "/anything", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
	} {
		p, err := Compile(tc.pattern)
		require.NoError(t, err)
		assert.Equal(t, tc.want, p.Match(tc.path), "%s vs %s", tc.pattern, tc.path)
	}
}

func TestGeneralizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/bank/customers.csv":                               "/srv/bank/customers.csv",
		"/proc/1234/status":                                     "/proc/*/status",
		"/tmp/upload-8823.json":                                 "/tmp/upload-*.json",
		"/data/users/3fa85f64-5717-4562-b3fc-2c963f66afa6.json": "/data/users/*.json",
		"/cache/d41d8cd98f00b204e9800998ecf8427e":               "/cache/*",
		"/var/sessions/sess_Zk3Qm9TyL0pXw2Rb.dat":               "/var/sessions/*.dat",
		"/etc/hosts":                                              "/etc/hosts",
		"/usr/lib/x86_64-linux-gnu/libc.so.6":                     "/usr/lib/x*_*-linux-gnu/libc.so.*",
		"/var/log/app/2025/11/20/requests.log":                    "/var/log/app/*/*/*/requests.log",
		"/home/agent/.config/agent/profile-20251120T100203Z.yaml": "/home/agent/.config/agent/*.yaml",
	} {
		assert.Equal(t, want, Generalize(in), in)
	}
}
