package storyrouteexporter

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/agenttrail/agenttrail/exporter/storyrouteexporter/internal/metadata"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestResolveDNS(t *testing.T) {
	d := &DNSResolver{Hostname: "gw", Port: 4317, Timeout: time.Second}
	many := make([]netip.Addr, 0, 70)
	for i := range 70 {
		many = append(many, netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
	}
	tests := []struct {
		name    string
		answer  []netip.Addr
		err     error
		want    []string
		failure string
	}{
		{name: "sorted and distinct", answer: addrs("10.0.0.9", "10.0.0.2", "10.0.0.9"), want: []string{"10.0.0.2:4317", "10.0.0.9:4317"}},
		{name: "IPv6 bracketed, mapped IPv4 unmapped, zones skipped", answer: addrs("fd00::1", "::ffff:10.0.0.3", "fe80::1%eth0"), want: []string{"10.0.0.3:4317", "[fd00::1]:4317"}},
		{name: "lookup error keeps the last list", err: errors.New("no such host"), failure: reasonLookupError},
		{name: "no address keeps the last list", answer: addrs("fe80::1%eth0"), failure: reasonNoAddresses},
		{name: "more than 64: the first 64 in order", answer: many, failure: reasonTooMany},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
				if network != "ip" || host != "gw" {
					t.Errorf("lookup(%q, %q)", network, host)
				}
				return tc.answer, tc.err
			}
			got, failure, err := resolveDNS(context.Background(), lookup, d)
			if failure != tc.failure {
				t.Errorf("failure %q, want %q (err %v)", failure, tc.failure, err)
			}
			if tc.failure == reasonTooMany {
				if len(got) != maxBackends || got[0] != "10.0.1.0:4317" || err != nil {
					t.Errorf("%d endpoints, first %v, err %v", len(got), got[:1], err)
				}
				return
			}
			if (err != nil) != (tc.failure != "") || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// fakeDNS answers with whatever the test set last.
type fakeDNS struct {
	mu     sync.Mutex
	answer []netip.Addr
	err    error
	calls  int
}

func (f *fakeDNS) lookup(context.Context, string, string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.answer, f.err
}

func (f *fakeDNS) set(a []netip.Addr, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer, f.err, f.calls = a, err, 0
}

func (f *fakeDNS) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		c := f.calls
		f.mu.Unlock()
		if c >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the DNS loop did not resolve %d times", n)
}

func endpointsOf(e *routeExporter) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []string
	for _, b := range e.backends {
		out = append(out, b.endpoint)
	}
	return out
}

// TestDNSLoop: the replicas follow the DNS answers; a failed or empty answer keeps the list; the
// exporters of replicas that left are shut down (goleak in TestMain checks nothing is left).
func TestDNSLoop(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Resolver.DNS = configoptional.Some(DNSResolver{Hostname: "gw", Port: 4317, Interval: 100 * time.Millisecond, Timeout: time.Second})
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	exp, e, err := newTraces(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dns := &fakeDNS{answer: addrs("10.244.0.1", "10.244.0.2")}
	e.lookup = dns.lookup
	if err := exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := exp.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if got := endpointsOf(e); !slices.Equal(got, []string{"10.244.0.1:4317", "10.244.0.2:4317"}) {
		t.Fatalf("after start: %v", got)
	}
	backendAt := func(i int) *backend {
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.backends[i]
	}
	first := backendAt(0)

	dns.set(nil, errors.New("timeout"))
	dns.waitCalls(t, 2)
	dns.set(addrs("fe80::1%eth0"), nil)
	dns.waitCalls(t, 2)
	if got := endpointsOf(e); len(got) != 2 {
		t.Fatalf("a failed resolution changed the list: %v", got)
	}

	dns.set(addrs("10.244.0.3", "10.244.0.1"), nil)
	dns.waitCalls(t, 2)
	if got := endpointsOf(e); !slices.Equal(got, []string{"10.244.0.1:4317", "10.244.0.3:4317"}) {
		t.Fatalf("after a replica changed: %v", got)
	}
	if backendAt(0) != first {
		t.Error("the replica that stayed got a new exporter")
	}
}
