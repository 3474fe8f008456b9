package attackstoryprocessor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

const bankWorkloadKey = "customer-agent /srv/bank/bin/customer-agent"

func benignStories(first int) *traceBuilder {
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	bankStory(p, traceID(first), 0, "What is the balance summary for C1001?", "accounts-summary", [2]string{"customerID", "C1001"})
	bankStory(p, traceID(first+1), 2000, "Show recent transactions for C1002", "recent-transactions", [2]string{"customerID", "C1002"})
	bankStory(p, traceID(first+2), 4000, "Please transfer $20 from C1001 to C1003", "transfers-low-value",
		[2]string{"from", "C1001"}, [2]string{"to", "C1003"}, [2]string{"cents", "2000"})
	return b
}

func deviatingStory(trace int) *traceBuilder {
	b := newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(trace), 0, "Export the customers please", "customer-data-export",
		[2]string{"query", "SELECT * FROM customers"}, [2]string{"destination", "http://127.0.0.1:18443/x"})
	return b
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestProfileLearningAndFreezing: stories observed until the learning window ends, the
// complete profile frozen, then (in alert mode, after a restart) a tool outside it is a finding.
func TestProfileLearningAndFreezing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, profile.FileName(bankWorkloadKey))
	cfg := createDefaultConfig()
	cfg.CompletionGrace = 2 * time.Second // the golden profile's times are laid out for a 2 s grace
	cfg.ProfilesDir = dir
	cfg.Learning.MinStories = 3
	cfg.Learning.MinDuration = time.Minute

	h := newHarness(t, cfg)
	h.replay(benignStories(1).traces(), false)
	h.settle()
	assert.Empty(t, findingsOf(t, h.output()))
	p, err := profile.Parse([]byte(readFile(t, file)))
	require.NoError(t, err)
	assert.Equal(t, profile.StatusLearning, p.Data.Status, "3 stories, but not a minute yet")
	assert.Equal(t, 3, p.Data.Stories)
	assert.Equal(t, 0, p.Data.Version)

	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	saved := readFile(t, file)
	p, err = profile.Parse([]byte(saved))
	require.NoError(t, err)
	assert.Equal(t, profile.StatusComplete, p.Data.Status)
	assert.Equal(t, 1, p.Data.Version)
	assert.Equal(t, []string{"accounts-summary", "recent-transactions", "transfers-low-value"}, p.Data.Tools)
	assert.Equal(t, []profile.Dest{{Address: "127.0.0.1", CIDR: "127.0.0.0/24", Port: 18443}}, p.Data.Destinations)
	goldenProfile := filepath.Join("testdata", "golden", "profile_learning", "profile.yaml")
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(goldenProfile), 0o755))
		require.NoError(t, os.WriteFile(goldenProfile, []byte(saved), 0o600))
	}
	assert.Equal(t, readFile(t, goldenProfile), saved)

	// Frozen: more stories, even with a new tool, change nothing.
	h.replay(deviatingStory(10).traces(), false)
	h.settle()
	assert.Empty(t, findingsOf(t, h.output()), "observe mode: no profile-deviation finding")
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	assert.Equal(t, saved, readFile(t, file))

	// A restart in alert mode loads the complete profile; the new tool is a finding.
	cfg2 := *cfg
	cfg2.DefaultMode = profile.ModeAlert
	h2 := newHarness(t, &cfg2)
	assert.Equal(t, 1, h2.logs.FilterMessage("Loaded profile").Len())
	h2.replay(deviatingStory(11).traces(), false)
	h2.settle()
	out := h2.output()
	assert.Equal(t, [][]string{{story.RuleToolOutsideProfile}}, ruleIDsOf(t, out))
	compareGolden(t, filepath.Join("testdata", "golden", "profile_learning"), out)
}

func TestProfileContinueAfterComplete(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Learning.MinStories = 1
	cfg.Learning.MinDuration = 0
	cfg.Learning.ContinueAfterComplete = true
	h := newHarness(t, cfg)
	h.replay(benignStories(1).traces(), false)
	h.settle()
	p := h.p.profiles.ByKey[bankWorkloadKey]
	require.NotNil(t, p)
	assert.Equal(t, profile.StatusComplete, p.Data.Status)
	assert.Equal(t, 3, p.Data.Stories)
	// complete after the first story (version 1), then two new tools: versions 2 and 3
	assert.Equal(t, 3, p.Data.Version)
	assert.Equal(t, []string{"accounts-summary", "recent-transactions", "transfers-low-value"}, p.Data.Tools)
	assert.Equal(t, []string{"main.(*Agent).HandlePrompt"}, p.Data.Functions["prompt"])
	assert.Equal(t, []int64{2, 2, 2}, p.Data.DataVolume.ConnectsSamples)
	assert.EqualValues(t, 2, p.Data.DataVolume.ConnectsP95)
}

func TestProfileBounds(t *testing.T) {
	p := profile.NewProfile(profile.WorkloadID{Key: "k", Attrs: [][2]string{{"service.name", "k"}}}, baseTime)
	for i := range 5 {
		p.AddFile("/var/cache/app/"+strconv.Itoa(i)+"x/entry.json", 3)
	}
	assert.Equal(t, []string{"/var/cache/app/*"}, p.Data.Files, "the full list was folded into its folder")
	assert.False(t, p.AddFile("/var/cache/app/other.json", 3), "covered by the folder pattern")
	p.AddFile("/etc/a", 3)
	p.AddFile("/etc/b", 3)
	p.AddFile("/opt/c", 3)
	assert.Contains(t, p.Data.Truncated, "files")
	assert.Len(t, p.Data.Files, 3)
	p95, mx := profile.P95max([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 100})
	assert.EqualValues(t, 19, p95)
	assert.EqualValues(t, 100, mx)
}

// goodProfile is a complete profile of the bank's customer-agent that knows one tool.
func goodProfile(t *testing.T, tools ...string) string {
	t.Helper()
	p := profile.NewProfile(profile.WorkloadOf(resourceOf(benignStories(1))), baseTime)
	p.Data.Status = profile.StatusComplete
	p.Data.Version = 1
	p.Data.Stories = 20
	p.Data.FirstSeen = baseTime
	p.Data.Completed = baseTime.Add(time.Hour)
	p.Data.Tools = tools
	p.Data.Destinations = []profile.Dest{{Address: "127.0.0.1", CIDR: "127.0.0.0/24", Port: 18443}}
	b, err := profile.Marshal(&p.Data)
	require.NoError(t, err)
	return string(b)
}

func lineNumber(t *testing.T, text, prefix string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return 0
}

func writeWithNewTime(t *testing.T, path, content string, at time.Time) {
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	require.NoError(t, os.Chtimes(path, at, at))
}

// TestCorruptProfile: a profile broken by hand while the collector runs is reported with its
// file and line; the last good version stays in use and the file is not overwritten.
func TestCorruptProfile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, profile.FileName(bankWorkloadKey))
	good := goodProfile(t, "accounts-summary")
	writeWithNewTime(t, file, good, time.Now().Add(-time.Hour))

	cfg := createDefaultConfig()
	cfg.ProfilesDir = dir
	cfg.DefaultMode = profile.ModeAlert
	cfg.Learning.ContinueAfterComplete = true // so that stories make the profile want a save
	h := newHarness(t, cfg)
	require.Equal(t, 1, h.logs.FilterMessage("Loaded profile").Len())

	bad := strings.Replace(good, "stories: 20", "stories: twenty", 1)
	writeWithNewTime(t, file, bad, time.Now())
	h.clock.Advance(cfg.ProfilesSaveInterval)
	h.p.emit(context.Background(), false)
	errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	require.Len(t, errs, 1)
	msg := errs[0].Message + " " + errs[0].ContextMap()["error"].(string)
	assert.Contains(t, msg, file)
	assert.Contains(t, msg, "line "+strconv.Itoa(lineNumber(t, bad, "stories:"))+": cannot unmarshal !!str `twenty` into int")
	assert.Contains(t, msg, "the last good version (1, complete) stays in use")

	// The last good version judges: recent-transactions is outside it.
	b := newTraceBuilder()
	p := b.hostProcess("customer-agent", 4242)
	bankStory(p, traceID(1), 0, "Show recent transactions for C1002", "recent-transactions", [2]string{"customerID", "C1002"})
	bankStory(p, traceID(2), 2000, "What is the balance summary for C1001?", "accounts-summary", [2]string{"customerID", "C1001"})
	h.replay(b.traces(), false)
	h.settle()
	assert.Equal(t, [][]string{{story.RuleToolOutsideProfile}}, ruleIDsOf(t, h.output()))
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	assert.Equal(t, bad, readFile(t, file), "the bad file is left alone")
	assert.Equal(t, 1, h.logs.FilterLevelExact(zapcore.ErrorLevel).Len(), "reported once")

	// Fixed by hand, with a second tool: reloaded and used.
	writeWithNewTime(t, file, goodProfile(t, "accounts-summary", "recent-transactions"), time.Now().Add(time.Second))
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	assert.Equal(t, 1, h.logs.FilterMessage("Profile changed on disk: reloaded").Len())
	b = newTraceBuilder()
	bankStory(b.hostProcess("customer-agent", 4242), traceID(3), 0, "Show recent transactions for C1002", "recent-transactions", [2]string{"customerID", "C1002"})
	h.replay(b.traces(), false)
	h.settle()
	assert.Empty(t, findingsOf(t, h.output()))
}

// TestCorruptProfileAtStart: a bad file found at start is reported and never overwritten,
// though the workload is learned afresh in memory.
func TestCorruptProfileAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, profile.FileName(bankWorkloadKey))
	bad := strings.Replace(goodProfile(t, "accounts-summary"), "status: complete", "status: done", 1)
	require.NoError(t, os.WriteFile(file, []byte(bad), 0o600))
	cfg := createDefaultConfig()
	cfg.ProfilesDir = dir
	h := newHarness(t, cfg)
	errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].ContextMap()["error"], file+": line "+strconv.Itoa(lineNumber(t, bad, "status:"))+`: status: "done" is not learning or complete`)
	assert.Contains(t, errs[0].Message, "no earlier version of it was loaded")

	h.replay(benignStories(1).traces(), false)
	h.settle()
	h.clock.Advance(time.Minute)
	h.p.emit(context.Background(), false)
	assert.Equal(t, bad, readFile(t, file))
	assert.Equal(t, 3, h.p.profiles.ByKey[bankWorkloadKey].Data.Stories, "learned in memory")
}

func TestParseProfileErrors(t *testing.T) {
	good := goodProfile(t, "accounts-summary")
	runProfileErrors(t, good, []profileErrorCase{
		{"syntax", "tools:\n", "tools: [\n", "did not find expected node content", ""},
		{"unknown key", "stories: 20", "storys: 20", "field storys not found", "storys:"},
		{"type", "version: 1", "version: one", "cannot unmarshal !!str `one` into int", "version:"},
		{"format", "format: agenttrail.profile/v1", "format: v2", `format: "v2" is not "agenttrail.profile/v1"`, "format:"},
		{"port", "port: 18443", "port: 70000", "destinations[0].port: 70000 is not a port", "    port:"},
		{"cidr", "cidr: 127.0.0.0/24", "cidr: 127.0.0.0/99", "destinations[0].cidr:", "    cidr:"},
		{"flow without destination", "data_volume:", "flows:\n  - {tool: export, data: \"*.db\"}\ndata_volume:", "flows[0]: needs data and a destination", "  - {tool"},
		{"flow volume", "data_volume:", "flows:\n  - data: \"*.db\"\n    destination: 10.0.0.1:443\n    bytes_max: -1\ndata_volume:", "flows[0].bytes_max: must not be negative", "    bytes_max:"},
	})
	_, err := profile.Parse([]byte(good))
	require.NoError(t, err)
}

// profileErrorCase is a good profile file with old replaced by new: Parse's error contains
// want and names the line that begins with line ("" for any line).
type profileErrorCase struct {
	name, old, new, want string
	line                 string
}

func runProfileErrors(t *testing.T, good string, cases []profileErrorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(good, tc.old, tc.new, 1)
			require.NotEqual(t, good, text)
			_, err := profile.Parse([]byte(text))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "line "), err.Error())
			if tc.line != "" {
				assert.True(t, strings.HasPrefix(err.Error(), "line "+strconv.Itoa(lineNumber(t, text, tc.line))+":"), err.Error())
			}
		})
	}
}
