package storyjoinprocessor

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden from the builders in the tests")

// TestGolden feeds the batches of testdata/golden/<case>/in-N.yaml in order (written from the
// builders with -update) and compares everything passed on, after wait, with out.yaml.
func TestGolden(t *testing.T) {
	for name, batches := range map[string][]ptrace.Traces{
		"client_first": {agentBatch(1, "10.0.0.1", 40001), serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2")},
		"server_first": {serviceBatch(0x10, 0x20, "10.0.0.1", 40001, "10.0.0.2"), agentBatch(1, "10.0.0.1", 40001)},
		"never_joined": {serviceBatch(0x10, 0x20, "10.0.0.9", 40001, "10.0.0.2"), agentBatch(1, "10.0.0.1", 40001)},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "golden", name)
			if *update {
				require.NoError(t, os.MkdirAll(dir, 0o755))
			}
			cfg := createDefaultConfig().(*Config)
			h := newHarness(t, cfg)
			for i, td := range batches {
				in := filepath.Join(dir, "in-"+string(rune('1'+i))+".yaml")
				if *update {
					require.NoError(t, golden.WriteTracesToFile(in, td))
				}
				read, err := golden.ReadTraces(in)
				require.NoError(t, err)
				h.send(read)
			}
			h.advance(cfg.Wait)
			out := h.out()
			expected := filepath.Join(dir, "out.yaml")
			if *update {
				require.NoError(t, golden.WriteTracesToFile(expected, out))
			}
			want, err := golden.ReadTraces(expected)
			require.NoError(t, err)
			require.NoError(t, ptracetest.CompareTraces(want, out, ptracetest.IgnoreResourceSpansOrder(),
				ptracetest.IgnoreSpansOrder()))
		})
	}
}
