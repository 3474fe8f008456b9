package story

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 2_100_000: "2.1 MB", 3_500_000_000: "3.5 GB"} {
		assert.Equal(t, want, FormatBytes(n))
	}
}

// TestOCSF checks the OCSF Detection Finding of the demo's attack field by field.
