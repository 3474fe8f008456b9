package attackstoryprocessor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// TestProfileFileBounds: a profile over a bound is refused with an error naming the key and
// its line, as any invalid profile.
func TestProfileFileBounds(t *testing.T) {
	good := goodProfile(t, "accounts-summary")
	many := func(n int, f func(i int) string) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(f(i))
		}
		return b.String()
	}
	runProfileErrors(t, good, []profileErrorCase{
		{"tools", "tools:\n  - accounts-summary\n", "tools:\n" + many(profile.MaxProfileEntries+1, func(i int) string { return "  - t" + strconv.Itoa(i) + "\n" }),
			"tools: 10001 entries, more than 10000", "tools:"},
		{"tool name", "  - accounts-summary\n", "  - accounts-summary\n  - " + strings.Repeat("x", profile.MaxProfileString+1) + "\n",
			"tools[1]: 4097 bytes, more than 4096", "  - xxx"},
		{"workload", "workload:\n", "workload:\n" + many(profile.MaxWorkloadAttrs, func(i int) string { return "  k" + strconv.Itoa(i) + ": v\n" }),
			"workload: 3", "workload:"},
		{"functions", "files:", "functions:\n  tool:\n    - " + strings.Repeat("f", profile.MaxProfileString+1) + "\nfiles:",
			"functions.tool[0]: 4097 bytes", "    - fff"},
		{"host", "port: 18443", "port: 18443\n    host: " + strings.Repeat("h", profile.MaxProfileString+1),
			"destinations[0].host: 4097 bytes", "    host:"},
		{"samples", "  connects_samples: []", "  connects_samples: [" + strings.Repeat("1, ", profile.MaxVolumeSamples) + "1]",
			"data_volume.connects_samples: 101 samples, more than 100", "  connects_samples:"},
		{"negative sample", "  bytes_sent_samples: []", "  bytes_sent_samples: [1, -1]",
			"data_volume.bytes_sent_samples: values must not be negative", "  bytes_sent_samples:"},
		{"stories", "stories: 20", "stories: 9999999999", "stories: at most 2147483647", "stories:"},
	})
}

// TestProfileFileUnreadable: a file too large to be a profile, or one that is not a regular
// file (a FIFO would block a reader forever), is refused by name before it is read; at start
// the processor reports it and learns the workload afresh without overwriting the file.
func TestProfileFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, profile.FileName(bankWorkloadKey))
	good := goodProfile(t, "accounts-summary")
	padded := good + "# " + strings.Repeat("x", profile.MaxProfileFileSize) + "\n"
	require.NoError(t, os.WriteFile(big, []byte(padded), 0o600))
	fifo := filepath.Join(dir, "fifo.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	_, err := profile.ReadFile(big)
	require.ErrorContains(t, err, big+": "+strconv.Itoa(len(padded))+" bytes, more than "+strconv.Itoa(profile.MaxProfileFileSize))
	done := make(chan error, 1)
	go func() { _, err := profile.ReadFile(fifo); done <- err }()
	select {
	case err := <-done:
		require.ErrorContains(t, err, fifo+": not a regular file")
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	_, errs := profile.ReadDir(dir)
	require.Len(t, errs, 2)

	cfg := createDefaultConfig()
	cfg.ProfilesDir = dir
	h := newHarness(t, cfg)
	errors := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	require.Len(t, errors, 2, "%v", errors)
	var msgs []string
	for _, e := range errors {
		msgs = append(msgs, fmt.Sprint(e.ContextMap()["error"]))
	}
	assert.Contains(t, strings.Join(msgs, "\n"), big+": "+strconv.Itoa(len(padded))+" bytes")
	assert.Contains(t, strings.Join(msgs, "\n"), fifo+": not a regular file")
	h.replay(benignStories(1).traces(), false)
	h.settle()
	h.clock.Advance(time.Minute)
	h.p.emit(t.Context(), false)
	b, err := os.ReadFile(big)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b, []byte(padded)), "the file is not overwritten")
	assert.Equal(t, 3, h.p.profiles.ByKey[bankWorkloadKey].Data.Stories, "learned in memory")
}

// TestTooManyProfileFiles: profiles_dir holding more profiles than the processor keeps loads
// the first maxProfiles, and says which were not.
func TestTooManyProfileFiles(t *testing.T) {
	dir := t.TempDir()
	for i := range profile.MaxProfiles + 2 {
		name := "svc-" + strconv.Itoa(i)
		p := profile.NewProfile(profile.WorkloadID{Key: name, Attrs: [][2]string{{"service.name", name}}}, baseTime)
		b, err := profile.Marshal(&p.Data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.yaml", i)), b, 0o600))
	}
	cfg := createDefaultConfig()
	cfg.ProfilesDir = dir
	h := newHarness(t, cfg)
	assert.Len(t, h.p.profiles.ByKey, profile.MaxProfiles)
	notLoaded := h.logs.FilterMessage("Too many profiles: this one is not loaded").All()
	require.Len(t, notLoaded, 2)
	assert.Equal(t, filepath.Join(dir, fmt.Sprintf("%05d.yaml", profile.MaxProfiles)), notLoaded[0].ContextMap()["file"])
	// Not read again while unchanged.
	h.clock.Advance(time.Hour)
	h.p.emit(t.Context(), false)
	assert.Len(t, h.logs.FilterMessage("Too many profiles: this one is not loaded").All(), 2)
}
