package story

import (
	"net/netip"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Inbound remembers the peers that connected to each process (the successful accept spans of
// the stories emitted), so that a later send to such a peer — the agent answering whoever sent
// it the request, on a keep-alive connection, possibly inside a story whose spans end late — is
// a reply on an inbound connection, not egress. Bounded: past MaxInbound the oldest peers are
// forgotten (their replies then count as egress again: the safe side), and Evicted counts them.
type Inbound struct {
	max     int
	set     map[string]struct{}
	order   []string
	Evicted int64
}

// MaxInbound is the default bound of Inbound.
const MaxInbound = 4096

// NewInbound remembers at most max peers.
func NewInbound(max int) *Inbound {
	return &Inbound{max: max, set: map[string]struct{}{}}
}

// Learn records the peers of the story's successful accepts.
func (in *Inbound) Learn(st *Story) {
	for _, sp := range st.spans {
		if SyscallName(sp.Span) != "accept" || Failure(sp.Span.Attributes()) != "" || sp.Scope.Src.proc == "" {
			continue
		}
		dest := peerDest(sp.Span.Attributes())
		if dest == "" {
			continue
		}
		key := sp.Scope.Src.proc + "\x00" + dest
		if _, ok := in.set[key]; ok {
			continue
		}
		if len(in.order) >= in.max {
			delete(in.set, in.order[0])
			in.order = in.order[1:]
			in.Evicted++
		}
		in.set[key] = struct{}{}
		in.order = append(in.order, key)
	}
}

func (in *Inbound) has(proc, dest string) bool {
	if in == nil || proc == "" {
		return false
	}
	_, ok := in.set[proc+"\x00"+dest]
	return ok
}

// peerDest is address:port ([v6]:port) of a span's peer, as egress writes it; "" without one.
func peerDest(attrs pcommon.Map) string {
	address := AttrStr(attrs, AttrPeerAddress)
	if address == "" {
		return ""
	}
	port := 0
	if v, ok := attrs.Get(AttrPeerPort); ok && v.Type() == pcommon.ValueTypeInt {
		port = int(v.Int())
	}
	if a, err := netip.ParseAddr(address); err == nil {
		a = a.Unmap()
		if a.Is6() {
			return "[" + a.String() + "]:" + Itoa(port)
		}
		return a.String() + ":" + Itoa(port)
	}
	return address + ":" + Itoa(port)
}
