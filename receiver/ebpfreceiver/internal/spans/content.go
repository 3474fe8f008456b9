package spans

import "net/netip"

// AttrSensitiveContent names the detectors that matched the sampled beginning of a file a traced
// process opened for reading (never the content itself).
const AttrSensitiveContent = "agenttrail.file.sensitive_content"

// SyscallExitContent is SyscallExit for an openat whose file was sampled: the openat span or
// event also carries agenttrail.file.sensitive_content with the detectors that matched. It is
// here, not in SyscallExit, because only the syscalls tracer knows the content, and only at exit
// (the file is open only once openat returned).
func (b *Builder) SyscallExitContent(h Header, ret int64, peer netip.AddrPort, detectors []string) {
	ps := b.syscalls[threadKey{h.PID, h.TID}]
	if ps == nil || len(detectors) == 0 || b.procs[h.PID] == nil {
		b.SyscallExit(h, ret, peer)
		return
	}
	put := func(s *span) {
		if s == nil {
			return
		}
		if s == ps.span {
			putStrings(s.attrs, AttrSensitiveContent, detectors)
			return
		}
		// An openat inside a call is an event of that call, appended by SyscallExit.
		if n := s.events.Len(); n > 0 && s.events.At(n-1).Name() == ps.sc.Name {
			putStrings(s.events.At(n-1).Attributes(), AttrSensitiveContent, detectors)
		}
	}
	if ps.span != nil {
		put(ps.span) // before SyscallExit: finishing the span copies its attributes
		b.SyscallExit(h, ret, peer)
		return
	}
	b.SyscallExit(h, ret, peer)
	put(ps.onParent)
}
