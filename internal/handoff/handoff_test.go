package handoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitReturnsWhenEveryPartIsDone(t *testing.T) {
	a := New()
	a.Add(2)
	res := make(chan error, 1)
	go func() { res <- a.Wait(context.Background()) }()
	a.Done(nil)
	select {
	case err := <-res:
		t.Fatalf("Wait returned %v with a part still held", err)
	case <-time.After(50 * time.Millisecond):
	}
	a.Done(nil)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

func TestWaitReturnsFirstError(t *testing.T) {
	a := New()
	a.Add(2)
	first := errors.New("queue full")
	a.Done(first)
	a.Done(errors.New("second"))
	if err := a.Wait(context.Background()); !errors.Is(err, first) {
		t.Fatalf("got %v, want %v", err, first)
	}
}

func TestWaitCancelled(t *testing.T) {
	a := New()
	a.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	a.Done(nil) // the part passed on later: no panic, no effect
	if a.Pending() != 0 {
		t.Fatalf("pending %d", a.Pending())
	}
}

func TestNilAck(t *testing.T) {
	var a *Ack
	a.Add(3)
	a.Done(errors.New("x"))
	if err := a.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestExtraDoneIgnored(t *testing.T) {
	a := New()
	if err := a.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Done(nil)
	a.Add(1)
	if a.Pending() != 0 {
		t.Fatalf("pending %d after the answer", a.Pending())
	}
}

func TestAnswered(t *testing.T) {
	a := New()
	a.Add(1)
	a.Done(nil) // the caller's reference
	if ok, _ := a.Answered(); ok {
		t.Fatal("answered with a part held")
	}
	want := errors.New("refused")
	a.Done(want)
	if ok, err := a.Answered(); !ok || !errors.Is(err, want) {
		t.Fatalf("Answered() = %v, %v", ok, err)
	}
}
