// Package handoff lets a processor that holds data back answer its caller only once every part
// of a request was passed on. Behind an OTLP receiver the caller is the sender's request: it
// is acknowledged when its spans are downstream (in an exporter's persistent queue), so a
// SIGKILL while the processor holds them loses nothing acknowledged — the sender still has
// them and sends again.
package handoff

import (
	"context"
	"fmt"
	"sync"
)

// Ack counts the parts of one request still held. New holds one reference for the caller,
// given up by Wait; the processor takes one (Add) per part it holds and gives it up (Done)
// when that part was passed on. A nil *Ack is valid and does nothing: the processor then
// answers at once, as before.
type Ack struct {
	mu   sync.Mutex
	n    int
	err  error
	done chan struct{}
}

// New returns an Ack with the caller's reference.
func New() *Ack { return &Ack{n: 1, done: make(chan struct{})} }

// Add takes n references: n parts held.
func (a *Ack) Add(n int) {
	if a == nil || n <= 0 {
		return
	}
	a.mu.Lock()
	if a.n > 0 { // after the last Done the answer is given: a late part cannot change it
		a.n += n
	}
	a.mu.Unlock()
}

// Done gives up one reference: a part was passed on, err being what the next component
// answered. The first error is the request's answer.
func (a *Ack) Done(err error) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n <= 0 {
		return
	}
	if err != nil && a.err == nil {
		a.err = err
	}
	a.n--
	if a.n == 0 {
		close(a.done)
	}
}

// Wait gives up the caller's reference and waits until every part was passed on, returning
// the first error of the next component, or until ctx ends: then the parts are still held
// (they are passed on later) but the caller gets an error, so that its sender keeps the data
// and sends it again (at-least-once; the processor recognises the repeated spans where it can).
func (a *Ack) Wait(ctx context.Context) error {
	if a == nil {
		return nil
	}
	a.Done(nil)
	select {
	case <-a.done:
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.err
	case <-ctx.Done():
		return fmt.Errorf("held spans not passed on yet: %w", context.Cause(ctx))
	}
}

// Answered reports, without waiting, whether every reference was given up, and the answer.
func (a *Ack) Answered() (answered bool, err error) {
	if a == nil {
		return true, nil
	}
	select {
	case <-a.done:
		a.mu.Lock()
		defer a.mu.Unlock()
		return true, a.err
	default:
		return false, nil
	}
}

// Pending is the number of references still held (tests).
func (a *Ack) Pending() int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}
