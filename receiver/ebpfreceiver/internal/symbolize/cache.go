package symbolize

import (
	"sync"
	"sync/atomic"
)

// binCache is a bounded, least-recently-used cache of binaries keyed by
// identity. Loads are deduplicated: concurrent requests for one key wait for
// a single load. Recency is a logical clock stored in each binary, so hits
// do not take the cache lock; eviction scans (MaxBinaries is small).
type binCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*cacheEntry

	evicted atomic.Uint64
}

type cacheEntry struct {
	ready chan struct{} // closed once bin is set
	bin   *binary       // nil if the load failed
}

func newBinCache(max int) *binCache {
	return &binCache{max: max, entries: make(map[string]*cacheEntry)}
}

// get returns the cached binary for key, waiting for an in-flight load, or
// nil when absent.
func (c *binCache) get(key string, tick uint64) *binary {
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	<-e.ready
	if e.bin != nil {
		e.bin.lastUsed.Store(tick)
	}
	return e.bin
}

// getOrLoad returns the cached binary for key or loads it with load (which
// may return nil on failure; failures are not cached).
func (c *binCache) getOrLoad(key string, tick uint64, load func() *binary) *binary {
	c.mu.Lock()
	if c.entries == nil { // closed
		c.mu.Unlock()
		return nil
	}
	if e := c.entries[key]; e != nil {
		c.mu.Unlock()
		<-e.ready
		if e.bin != nil {
			e.bin.lastUsed.Store(tick)
		}
		return e.bin
	}
	e := &cacheEntry{ready: make(chan struct{})}
	c.entries[key] = e
	c.mu.Unlock()

	b := load()
	if b != nil {
		b.lastUsed.Store(tick)
	}
	e.bin = b
	close(e.ready)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		return b
	}
	if b == nil {
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		return nil
	}
	for len(c.entries) > c.max && c.evictOne(key) {
	}
	return b
}

// evictOne removes the least recently used loaded entry other than keep.
// c.mu must be held.
func (c *binCache) evictOne(keep string) bool {
	var (
		victim string
		oldest uint64
		found  bool
	)
	for k, e := range c.entries {
		if k == keep {
			continue
		}
		select {
		case <-e.ready:
		default:
			continue // still loading
		}
		if e.bin == nil {
			continue
		}
		if u := e.bin.lastUsed.Load(); !found || u < oldest {
			victim, oldest, found = k, u, true
		}
	}
	if !found {
		return false
	}
	c.entries[victim].bin.evicted.Store(true)
	delete(c.entries, victim)
	c.evicted.Add(1)
	return true
}

func (c *binCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *binCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		select {
		case <-e.ready:
			if e.bin != nil {
				e.bin.evicted.Store(true)
			}
		default:
		}
	}
	c.entries = nil
}
