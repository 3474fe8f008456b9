package sockspan

import "time"

// Inbound remembers the connections a node accepted (keyed by the caller: node and client
// address), each with the time it was last put, at most max of them. Both tiers need it alike:
// I/O on a connection accepted earlier is the server side. Each caller keeps its own policy of
// when to put a key again.
type Inbound[K comparable] struct {
	max  int
	seen map[K]time.Time
	// queue holds one entry per Put, oldest first; an entry whose time is no longer the map's
	// was put again later and is skipped.
	queue []inboundEntry[K]
}

type inboundEntry[K comparable] struct {
	key K
	at  time.Time
}

// NewInbound returns an empty Inbound of at most max keys.
func NewInbound[K comparable](max int) *Inbound[K] {
	return &Inbound[K]{max: max, seen: map[K]time.Time{}}
}

// Seen returns when k was last put.
func (in *Inbound[K]) Seen(k K) (time.Time, bool) {
	t, ok := in.seen[k]
	return t, ok
}

// Put remembers k as seen at now. A new key at the bound first forgets the oldest one: evicted
// says so (the caller counts it).
func (in *Inbound[K]) Put(k K, now time.Time) (evicted bool) {
	if _, ok := in.seen[k]; !ok && len(in.seen) >= in.max {
		for len(in.queue) > 0 && !evicted {
			q := in.queue[0]
			in.queue = in.queue[1:]
			if t, ok := in.seen[q.key]; ok && t.Equal(q.at) {
				delete(in.seen, q.key)
				evicted = true
			}
		}
	}
	in.seen[k] = now
	in.queue = append(in.queue, inboundEntry[K]{key: k, at: now})
	return evicted
}

// ForgetBefore forgets the keys last put before limit.
func (in *Inbound[K]) ForgetBefore(limit time.Time) {
	for len(in.queue) > 0 && in.queue[0].at.Before(limit) {
		q := in.queue[0]
		in.queue = in.queue[1:]
		if t, ok := in.seen[q.key]; ok && t.Equal(q.at) {
			delete(in.seen, q.key)
		}
	}
}

// Len is the number of keys remembered; QueueLen the entries queued for them (bounded tests).
func (in *Inbound[K]) Len() int      { return len(in.seen) }
func (in *Inbound[K]) QueueLen() int { return len(in.queue) }
