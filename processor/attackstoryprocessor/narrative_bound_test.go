package attackstoryprocessor

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// openatSpan is an openat of a process with no configured function open: a span of its own.
func (p *procBuilder) openatSpan(parent spanRef, atMs float64, path string) {
	s, _ := p.newSpan(parent.trace, &parent, "openat", ptrace.SpanKindInternal, atMs, atMs+0.05)
	m := s.Attributes()
	p.syscallAttrs(m, "openat")
	m.PutStr("file.path", path)
	m.PutStr("agenttrail.open.flags", "O_RDONLY|O_CLOEXEC")
	m.PutInt("agenttrail.syscall.result", 3)
}

var localeFiles = func() []string {
	var out []string
	for _, lang := range []string{"en_US.UTF-8", "en_US.utf8", "en_US", "en.UTF-8", "en.utf8", "en"} {
		for _, cat := range []string{"LC_MESSAGES/coreutils.mo", "LC_MESSAGES/libc.mo", "LC_TIME", "LC_CTYPE", "LC_NUMERIC"} {
			out = append(out, "/usr/share/locale/"+lang+"/"+cat)
		}
	}
	return out
}()

// catThenSend: the run-report tool spawns cat, which loads its libraries, reads 30 locale
// files and customers.csv; then the tool sends the output to 203.0.113.9. 47 steps before
// folding, the send the 43rd: a narrative cut at 40 steps does not have it.
func catThenSend(b *traceBuilder) {
	p := b.hostProcess("customer-agent", 4242)
	root := p.prompt(traceID(1), 0, 3000, "Run the monthly report")
	p.chat(root, 5, 600, "model-x")
	tool := p.tool(root, 601, 2000, "run-report", [2]string{"name", "monthly"})
	exec := p.execve(tool, 610, 611, "/usr/bin/cat", "/srv/bank/customers.csv")
	cat := b.hostProcess("cat", 5000)
	cat.attrs[3] = [2]any{"process.executable.path", "/usr/bin/cat"}
	cat.openatSpan(exec, 612, "/etc/ld.so.cache")
	cat.openatSpan(exec, 613, "/lib/x86_64-linux-gnu/libc.so.6")
	cat.openatSpan(exec, 613.5, "/usr/lib/locale/locale-archive")
	cat.openatSpan(exec, 613.6, "/usr/lib/locale/C.utf8/LC_CTYPE")
	cat.openatSpan(exec, 613.7, "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache")
	cat.openatSpan(exec, 613.8, "/etc/locale.alias")
	for i, path := range localeFiles {
		cat.openatSpan(exec, 615+float64(i)*0.5, path)
	}
	cat.openatSpan(exec, 640, "/srv/bank/customers.csv")
	p.connect(tool, 700, 700.3, "203.0.113.9", 443)
	p.sendto(tool, 701, 720, "203.0.113.9", 443, 2_100_000)
	p.chat(root, 2001, 2990, "model-x")
}

func TestNarrativeKeepsDecisiveSteps(t *testing.T) {
	t.Run("a spawned cat reads 30 locale files before the send", func(t *testing.T) {
		b := newTraceBuilder()
		catThenSend(b)
		n := finding.Narrative(storyFacts(t, b), finding.Hints{Sensitive: match.MustCompile(defaultSensitivePaths())})
		assert.Equal(t, "10:02:03.120 customer-agent (pid 4242) accepted a prompt in main.(*Agent).HandlePrompt"+
			" → chat model-x → connect 127.0.0.1:18443 → execute_tool run-report(name=monthly) → exec /usr/bin/cat"+
			" → read /etc/ld.so.cache → read /lib/x86_64-linux-gnu/libc.so.6 → read 3 files under /usr/lib → read /etc/locale.alias"+
			" → read 30 files under /usr/share/locale → read /srv/bank/customers.csv"+
			" → connect 203.0.113.9:443, 2.1 MB sent → sendto 203.0.113.9:443 → chat model-x → connect 127.0.0.1:18443", n)
	})

	t.Run("in the finding and its OCSF desc", func(t *testing.T) {
		cfg := createDefaultConfig()
		cfg.DefaultMode = profile.ModeAlert
		h := newHarness(t, cfg)
		b := newTraceBuilder()
		catThenSend(b)
		h.replay(b.traces(), false)
		h.settle()
		fs := findingsOf(t, h.output())
		require.Len(t, fs, 1)
		desc := fs[0]["finding_info"].(map[string]any)["desc"].(string)
		assert.Contains(t, desc, "read 30 files under /usr/share/locale → read /srv/bank/customers.csv → connect 203.0.113.9:443, 2.1 MB sent")
	})

	t.Run("more ordinary steps than the bound: decisive steps kept, the rest cut with a count", func(t *testing.T) {
		b := newTraceBuilder()
		p := b.hostProcess("customer-agent", 4242)
		root := p.prompt(traceID(1), 0, 3000, "Run the report")
		tool := p.tool(root, 10, 2000, "run-report")
		// 60 files in 60 different top-level folders: nothing to fold
		for i := range 60 {
			p.openatSpan(tool, 20+float64(i), "/d"+story.Itoa(i)+"/f")
		}
		p.connect(tool, 100, 100.3, "203.0.113.9", 443)
		for i := range 5 {
			p.openatSpan(tool, 110+float64(i), "/e"+story.Itoa(i)+"/f")
		}
		p.execve(tool, 120, 121, "/bin/sh", "-c", "id")
		n := finding.Narrative(storyFacts(t, b), finding.Hints{})
		steps := strings.Split(n, " → ")
		assert.Len(t, steps, finding.MaxNarrativeSteps)
		assert.Contains(t, n, "read /d0/f → read /d1/f")
		assert.Contains(t, n, "read /d33/f → … 26 more steps → connect 203.0.113.9:443 → … 5 more steps → exec /bin/sh")
	})

	t.Run("more decisive steps than the bound: the first and the last", func(t *testing.T) {
		b := newTraceBuilder()
		p := b.hostProcess("customer-agent", 4242)
		root := p.prompt(traceID(1), 0, 3000, "Scan")
		tool := p.tool(root, 10, 2000, "scan")
		for i := range 100 {
			p.connect(tool, 20+float64(i), 20.3+float64(i), "10.0.0."+story.Itoa(i+1), 22)
		}
		n := finding.Narrative(storyFacts(t, b), finding.Hints{})
		steps := strings.Split(n, " → ")
		assert.Len(t, steps, finding.MaxNarrativeSteps)
		assert.Contains(t, n, "connect 10.0.0.1:22")
		assert.Contains(t, n, "connect 10.0.0.18:22 → … 63 more steps → connect 10.0.0.82:22")
		assert.True(t, strings.HasSuffix(n, "connect 10.0.0.100:22"), n)
	})

	t.Run("a sensitive or denied read is never folded", func(t *testing.T) {
		b := newTraceBuilder()
		p := b.hostProcess("customer-agent", 4242)
		root := p.prompt(traceID(1), 0, 3000, "Report")
		tool := p.tool(root, 10, 2000, "run-report")
		p.openatSpan(tool, 20, "/srv/data/a.csv")
		p.openatSpan(tool, 21, "/srv/data/customers.csv")
		p.openatSpan(tool, 22, "/srv/data/b.csv")
		p.openatSpan(tool, 23, "/srv/data/c.csv")
		p.openatSpan(tool, 24, "/srv/data/d.csv")
		p.openatSpan(tool, 25, "/srv/data/e.csv")
		p.spans[len(p.spans)-1].span.Attributes().PutStr("error.type", "EACCES")
		n := finding.Narrative(storyFacts(t, b), finding.Hints{Sensitive: match.MustCompile(defaultSensitivePaths())})
		assert.Contains(t, n, "execute_tool run-report() → read /srv/data/a.csv → read /srv/data/customers.csv → read 3 files under /srv/data → read /srv/data/e.csv failed (EACCES)")
	})
}
