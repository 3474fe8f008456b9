package attackstoryprocessor

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
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

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// FuzzParseProfile: a profile file of any bytes is refused with an error naming its line, or
// loaded within the bounds of what a profile may hold; a loaded one is saved as it reads
// back, and is used (learning, rules, the kernel policy, the review text) without a panic.
func FuzzParseProfile(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "golden", "profile_learning", "profile.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("format: agenttrail.profile/v1\nworkload: {service.name: a}\nstatus: learning\nversion: 0\nstories: 0\n" +
		"tools: [b, a, a]\nfunctions: {tool: [z, y, z]}\nfiles: ['/x/*']\ndestinations: [{host: h, port: 1}]\n" +
		"data_volume: {connects_samples: [3, 1], bytes_sent_samples: [9]}\ntruncated: [files]\n"))
	f.Add([]byte("format: agenttrail.profile/v1\nworkload: {service.name: a}\nstatus: complete\nversion: 1\nstories: 3\n" +
		"tools: [t]\nflows:\n  - {tool: t, data: '/tmp/*', destination: '10.0.0.1:443', bytes_max: 10}\n  - {data: '*.db', destination: 'h:1', bytes_max: 0}\n" +
		"  - {tool: t, data: '/tmp/*', destination: '10.0.0.1:443', bytes_max: 99}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("format: agenttrail.profile/v1\nworkload:\n  ? [x]\n  : y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProfile(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		d := &p.data
		for _, l := range [][]string{d.Tools, d.Executables, d.Files} {
			if len(l) > maxProfileEntries {
				t.Fatalf("%d entries", len(l))
			}
			for _, s := range l {
				if len(s) > maxProfileString {
					t.Fatalf("entry of %d bytes", len(s))
				}
			}
		}
		if len(d.Destinations) > maxProfileEntries || len(d.Workload) > maxWorkloadAttrs ||
			len(d.DataVolume.ConnectsSamples) > maxVolumeSamples || len(d.DataVolume.BytesSentSamples) > maxVolumeSamples {
			t.Fatalf("over a bound: %d destinations, %d workload attributes", len(d.Destinations), len(d.Workload))
		}
		// Saved, it reads back the same.
		out, err := marshalProfile(d)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		q, err := parseProfile(out)
		if err != nil {
			t.Fatalf("a loaded profile does not read back once saved: %v\n%s", err, out)
		}
		if len(d.Flows) > maxProfileEntries {
			t.Fatalf("%d flows", len(d.Flows))
		}
		if q.id.key != p.id.key || len(q.data.Tools) != len(d.Tools) || len(q.data.Destinations) != len(d.Destinations) || len(q.data.Flows) != len(d.Flows) {
			t.Fatalf("read back differently: %q %d %d, was %q %d %d", q.id.key, len(q.data.Tools), len(q.data.Destinations), p.id.key, len(d.Tools), len(d.Destinations))
		}
		// Used: the rules' lookups, the kernel policy, the review text, learning.
		p.hasTool("a")
		p.hasExecutable("/bin/sh")
		p.knowsDestination(story.EgressCall{Address: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 443, Host: "h"})
		match.Any(p.files, "/etc/passwd")
		p.knownFlow(profileFlow{Tool: "t", Data: "/tmp/*", Destination: "10.0.0.1:443"}, 5000, 10)
		buildKernelPolicy(d, nil)
		(&ProfileFile{Path: "p.yaml", p: p}).WriteText(io.Discard)
		cfg := createDefaultConfig().Learning
		cfg.ContinueAfterComplete = true
		fa := &story.Facts{
			Tools:     []story.ToolCall{{Name: "t"}},
			Functions: map[string][]string{"tool": {"fn"}},
			Execs:     []story.ExecCall{{Path: "/bin/true"}},
			Files:     []story.FileAccess{{Path: "/tmp/x/1/y", Read: true}},
			Egress:    []story.EgressCall{{Address: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 443}},
			Connects:  1,
		}
		p.learn(fa, true, baseTime.Add(time.Hour), cfg, match.MustCompile([]string{"/tmp/*"}))
		p.refreshVolume()
		if _, err := marshalProfile(d); err != nil {
			t.Fatalf("marshal after learning: %v", err)
		}
	})
}

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
	for _, tc := range []struct {
		name, old, new, want, line string
	}{
		{"tools", "tools:\n  - accounts-summary\n", "tools:\n" + many(maxProfileEntries+1, func(i int) string { return "  - t" + strconv.Itoa(i) + "\n" }),
			"tools: 10001 entries, more than 10000", "tools:"},
		{"tool name", "  - accounts-summary\n", "  - accounts-summary\n  - " + strings.Repeat("x", maxProfileString+1) + "\n",
			"tools[1]: 4097 bytes, more than 4096", "  - xxx"},
		{"workload", "workload:\n", "workload:\n" + many(maxWorkloadAttrs, func(i int) string { return "  k" + strconv.Itoa(i) + ": v\n" }),
			"workload: 3", "workload:"},
		{"functions", "files:", "functions:\n  tool:\n    - " + strings.Repeat("f", maxProfileString+1) + "\nfiles:",
			"functions.tool[0]: 4097 bytes", "    - fff"},
		{"host", "port: 18443", "port: 18443\n    host: " + strings.Repeat("h", maxProfileString+1),
			"destinations[0].host: 4097 bytes", "    host:"},
		{"samples", "  connects_samples: []", "  connects_samples: [" + strings.Repeat("1, ", maxVolumeSamples) + "1]",
			"data_volume.connects_samples: 101 samples, more than 100", "  connects_samples:"},
		{"negative sample", "  bytes_sent_samples: []", "  bytes_sent_samples: [1, -1]",
			"data_volume.bytes_sent_samples: values must not be negative", "  bytes_sent_samples:"},
		{"stories", "stories: 20", "stories: 9999999999", "stories: at most 2147483647", "stories:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(good, tc.old, tc.new, 1)
			require.NotEqual(t, good, text)
			_, err := parseProfile([]byte(text))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "line "+strconv.Itoa(lineNumber(t, text, tc.line))+":"), err.Error())
		})
	}
}

// TestProfileFileUnreadable: a file too large to be a profile, or one that is not a regular
// file (a FIFO would block a reader forever), is refused by name before it is read; at start
// the processor reports it and learns the workload afresh without overwriting the file.
func TestProfileFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, profileFileName(bankWorkloadKey))
	good := goodProfile(t, "accounts-summary")
	padded := good + "# " + strings.Repeat("x", maxProfileFileSize) + "\n"
	require.NoError(t, os.WriteFile(big, []byte(padded), 0o600))
	fifo := filepath.Join(dir, "fifo.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	_, err := ReadProfileFile(big)
	require.ErrorContains(t, err, big+": "+strconv.Itoa(len(padded))+" bytes, more than "+strconv.Itoa(maxProfileFileSize))
	done := make(chan error, 1)
	go func() { _, err := ReadProfileFile(fifo); done <- err }()
	select {
	case err := <-done:
		require.ErrorContains(t, err, fifo+": not a regular file")
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	_, errs := ReadProfileDir(dir)
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
	assert.Equal(t, 3, h.p.profiles.byKey[bankWorkloadKey].data.Stories, "learned in memory")
}

// TestTooManyProfileFiles: profiles_dir holding more profiles than the processor keeps loads
// the first maxProfiles, and says which were not.
func TestTooManyProfileFiles(t *testing.T) {
	dir := t.TempDir()
	for i := range maxProfiles + 2 {
		name := "svc-" + strconv.Itoa(i)
		p := newProfile(workloadID{key: name, attrs: [][2]string{{"service.name", name}}}, baseTime)
		b, err := marshalProfile(&p.data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.yaml", i)), b, 0o600))
	}
	cfg := createDefaultConfig()
	cfg.ProfilesDir = dir
	h := newHarness(t, cfg)
	assert.Len(t, h.p.profiles.byKey, maxProfiles)
	notLoaded := h.logs.FilterMessage("Too many profiles: this one is not loaded").All()
	require.Len(t, notLoaded, 2)
	assert.Equal(t, filepath.Join(dir, fmt.Sprintf("%05d.yaml", maxProfiles)), notLoaded[0].ContextMap()["file"])
	// Not read again while unchanged.
	h.clock.Advance(time.Hour)
	h.p.emit(t.Context(), false)
	assert.Len(t, h.logs.FilterMessage("Too many profiles: this one is not loaded").All(), 2)
}
