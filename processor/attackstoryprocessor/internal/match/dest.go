package match

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Dest is one parsed allowed_destinations entry.
type Dest struct {
	Prefix netip.Prefix // valid: the address must be inside
	Host   string       // non-empty: a host name (or *.suffix) an attribute of the egress names
	AnyIP  bool         // "*:port"
	Port   int          // 0: any port
}

// ParseDest parses an allowed_destinations entry: IP, IP:port, [IPv6]:port, CIDR,
// CIDR:port, host, host:port, *.domain[:port] or *:port.
func ParseDest(s string) (Dest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Dest{}, errors.New("empty destination")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return Dest{Prefix: netip.PrefixFrom(ap.Addr().Unmap(), ap.Addr().Unmap().BitLen()), Port: int(ap.Port())}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return Dest{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if slash := strings.IndexByte(s, '/'); slash >= 0 {
		cidr, port := s, 0
		if colon := strings.IndexByte(s[slash:], ':'); colon >= 0 {
			cidr = s[:slash+colon]
			p, err := parsePort(s[slash+colon+1:])
			if err != nil {
				return Dest{}, fmt.Errorf("%q: %w", s, err)
			}
			port = p
		}
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil {
			return Dest{}, fmt.Errorf("%q is not an address, CIDR or host name: %w", s, err)
		}
		return Dest{Prefix: pfx.Masked(), Port: port}, nil
	}
	host, port := s, 0
	if colon := strings.LastIndexByte(s, ':'); colon >= 0 {
		host = s[:colon]
		p, err := parsePort(s[colon+1:])
		if err != nil {
			return Dest{}, fmt.Errorf("%q: %w", s, err)
		}
		port = p
	}
	if host == "*" {
		if port == 0 {
			return Dest{}, fmt.Errorf("%q: \"*\" needs a port (\"*:443\")", s)
		}
		return Dest{AnyIP: true, Port: port}, nil
	}
	if !validHostPattern(host) {
		return Dest{}, fmt.Errorf("%q is not an address, CIDR or host name", s)
	}
	return Dest{Host: strings.ToLower(host), Port: port}, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

func validHostPattern(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// Matches reports whether the egress to addr:port (host: a name an attribute gave, or "")
// is inside this entry.
func (d Dest) Matches(addr netip.Addr, port int, host string) bool {
	if d.Port != 0 && d.Port != port {
		return false
	}
	switch {
	case d.AnyIP:
		return true
	case d.Prefix.IsValid():
		return addr.IsValid() && d.Prefix.Contains(addr.Unmap())
	case d.Host != "":
		if host == "" {
			return false
		}
		host = strings.ToLower(host)
		if rest, ok := strings.CutPrefix(d.Host, "*."); ok {
			return strings.HasSuffix(host, "."+rest)
		}
		return host == d.Host
	}
	return false
}
