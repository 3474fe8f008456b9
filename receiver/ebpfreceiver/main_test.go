package ebpfreceiver

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain removes what the tests built once for all of them, and fails the package when a
// goroutine outlives its tests (a read loop, a ring buffer waiter or a tracer not stopped by
// Shutdown).
func TestMain(m *testing.M) {
	code := m.Run()
	if mockModelDir != "" {
		os.RemoveAll(mockModelDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
