package storyrouteexporter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// Reasons of agenttrail.storyroute.resolver.failures.
const (
	reasonLookupError = "lookup_error" // the DNS lookup failed or timed out: the last replica list stays
	reasonNoAddresses = "no_addresses" // the name has no address: the last replica list stays
	reasonTooMany     = "too_many"     // more addresses than maxBackends: the first in sorted order are used
)

// lookupFunc resolves a host name to its addresses (net.Resolver.LookupNetIP's shape), so
// tests can give the exporter addresses without a DNS server.
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// resolveDNS returns the replicas of a DNS resolver: each address of the name with the port,
// sorted and distinct (every agent must see the same list to place keys alike). failure is a
// reason of agenttrail.storyroute.resolver.failures, "" when there was none; with an error the
// list is nil and the caller keeps the one it had.
func resolveDNS(ctx context.Context, lookup lookupFunc, d *DNSResolver) (endpoints []string, failure string, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	addrs, err := lookup(ctx, "ip", d.Hostname)
	if err != nil {
		return nil, reasonLookupError, fmt.Errorf("resolve %q: %w", d.Hostname, err)
	}
	port := strconv.Itoa(d.Port)
	for _, a := range addrs {
		// A zone (fe80::1%eth0) names an interface of this node: not a replica address.
		if !a.IsValid() || a.Zone() != "" {
			continue
		}
		endpoints = append(endpoints, net.JoinHostPort(a.Unmap().String(), port))
	}
	endpoints = sortedDistinct(endpoints)
	if len(endpoints) == 0 {
		return nil, reasonNoAddresses, fmt.Errorf("resolve %q: no address", d.Hostname)
	}
	if len(endpoints) > maxBackends {
		return endpoints[:maxBackends], reasonTooMany, nil
	}
	return endpoints, "", nil
}

func sortedDistinct(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
