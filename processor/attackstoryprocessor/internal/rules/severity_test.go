package rules

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSeverity(t *testing.T) {
	for s, want := range map[string]int{"low": 2, "Medium": 3, "HIGH": 4, "critical": 5, "informational": 1, "4": 4} {
		got, err := ParseSeverity(s)
		require.NoError(t, err)
		assert.Equal(t, want, got, s)
	}
	_, err := ParseSeverity("0")
	assert.Error(t, err)
}
