package profile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
)

// KernelDest is a destination the kernel allows: an address prefix and a port (0: any).
type KernelDest struct {
	Prefix netip.Prefix
	Port   uint16
}

// KernelPolicy is what the kernel can enforce of a profile and the declared boundaries.
type KernelPolicy struct {
	Dests         []KernelDest
	Execs         []string
	Unenforceable []string // entries the kernel cannot express (host names): connections to them are refused
}

// BuildKernelPolicy: the profile's destinations (their CIDR, else their address, with their
// port; 0 is any port) and the declared allowed_destinations (IP, CIDR, with or without port;
// "*:port" is any address), and the profile's executables.
func BuildKernelPolicy(d *Data, declared []string) KernelPolicy {
	var k KernelPolicy
	for _, dst := range d.Destinations {
		var pfx netip.Prefix
		if p, err := netip.ParsePrefix(dst.CIDR); err == nil {
			pfx = p.Masked()
		} else if a, err := netip.ParseAddr(dst.Address); err == nil {
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, a.BitLen())
		} else {
			k.Unenforceable = append(k.Unenforceable, fmt.Sprintf("profile destination %s:%d (a host name: the kernel sees addresses only)", cmp.Or(dst.Host, dst.Address), dst.Port))
			continue
		}
		k.Dests = append(k.Dests, KernelDest{Prefix: pfx, Port: uint16(dst.Port)})
	}
	for _, s := range declared {
		m, err := match.ParseDest(s)
		if err != nil {
			continue
		}
		switch {
		case m.Prefix.IsValid():
			k.Dests = append(k.Dests, KernelDest{Prefix: m.Prefix, Port: uint16(m.Port)})
		case m.AnyIP:
			k.Dests = append(k.Dests,
				KernelDest{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: uint16(m.Port)},
				KernelDest{Prefix: netip.MustParsePrefix("::/0"), Port: uint16(m.Port)})
		default:
			k.Unenforceable = append(k.Unenforceable, "allowed_destinations entry "+strconv.Quote(s)+" (a host name: the kernel sees addresses only)")
		}
	}
	slices.SortFunc(k.Dests, func(a, b KernelDest) int {
		if c := strings.Compare(a.Prefix.String(), b.Prefix.String()); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	k.Dests = slices.Compact(k.Dests)
	k.Execs = slices.Clone(d.Executables)
	return k
}

// AllowsDestination mirrors the kernel's check.
func (k KernelPolicy) AllowsDestination(addr netip.Addr, port int) bool {
	addr = addr.Unmap()
	for _, d := range k.Dests {
		if (d.Port == 0 || int(d.Port) == port) && d.Prefix.Contains(addr) {
			return true
		}
	}
	return false
}

func (k KernelPolicy) AllowsExecutable(p string) bool { return slices.Contains(k.Execs, p) }

// Hash identifies the policy, to tell whether a re-apply is needed.
func (k KernelPolicy) Hash(version int) string {
	var sb strings.Builder
	sb.WriteString(strconv.Itoa(version))
	for _, d := range k.Dests {
		sb.WriteString("|" + d.Prefix.String() + ":" + strconv.Itoa(int(d.Port)))
	}
	sb.WriteString("|x")
	for _, e := range k.Execs {
		sb.WriteString("|" + e)
	}
	return sb.String()
}
