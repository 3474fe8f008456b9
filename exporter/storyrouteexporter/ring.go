package storyrouteexporter

import "hash/fnv"

// ring places keys on replicas by rendezvous (highest random weight) hashing: a key goes to
// the replica whose hash mixed with the key's scores highest. Adding a replica moves only the
// keys it now wins (about 1/n of them), removing one moves only its own keys, and every agent
// with the same replica list places every key alike: the hashes are fixed functions of the
// strings (FNV-1a, then SplitMix64's finalizer), not seeded per process.
type ring struct {
	endpoints []string // sorted, distinct
	hashes    []uint64
}

func newRing(endpoints []string) *ring {
	r := &ring{endpoints: endpoints, hashes: make([]uint64, len(endpoints))}
	for i, e := range endpoints {
		r.hashes[i] = mix(hashString(e))
	}
	return r
}

// pick returns the index of the replica of key, -1 when there is none.
func (r *ring) pick(key string) int {
	if len(r.endpoints) == 0 {
		return -1
	}
	h := hashString(key)
	best, bestScore := 0, mix(h^r.hashes[0])
	for i := 1; i < len(r.hashes); i++ {
		// Ties (equal 64-bit scores) go to the first in sorted order, the same on every agent.
		if s := mix(h ^ r.hashes[i]); s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// mix is SplitMix64's finalizer: FNV alone leaves similar strings (10.0.0.1, 10.0.0.2) with
// similar hashes, which would put neighbouring pod IPs on one replica.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
