package profile

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// FuzzParseProfile: a profile file of any bytes is refused with an error naming its line, or
// loaded within the bounds of what a profile may hold; a loaded one is saved as it reads
// back, and is used (learning, rules, the kernel policy, the review text) without a panic.
func FuzzParseProfile(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("..", "testdata", "golden", "profile_learning", "profile.yaml"))
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
		p, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		d := &p.Data
		for _, l := range [][]string{d.Tools, d.Executables, d.Files} {
			if len(l) > MaxProfileEntries {
				t.Fatalf("%d entries", len(l))
			}
			for _, s := range l {
				if len(s) > MaxProfileString {
					t.Fatalf("entry of %d bytes", len(s))
				}
			}
		}
		if len(d.Destinations) > MaxProfileEntries || len(d.Workload) > MaxWorkloadAttrs ||
			len(d.DataVolume.ConnectsSamples) > MaxVolumeSamples || len(d.DataVolume.BytesSentSamples) > MaxVolumeSamples {
			t.Fatalf("over a bound: %d destinations, %d workload attributes", len(d.Destinations), len(d.Workload))
		}
		// Saved, it reads back the same.
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("a loaded profile does not read back once saved: %v\n%s", err, out)
		}
		if len(d.Flows) > MaxProfileEntries {
			t.Fatalf("%d flows", len(d.Flows))
		}
		if q.ID.Key != p.ID.Key || len(q.Data.Tools) != len(d.Tools) || len(q.Data.Destinations) != len(d.Destinations) || len(q.Data.Flows) != len(d.Flows) {
			t.Fatalf("read back differently: %q %d %d, was %q %d %d", q.ID.Key, len(q.Data.Tools), len(q.Data.Destinations), p.ID.Key, len(d.Tools), len(d.Destinations))
		}
		// Used: the rules' lookups, the kernel policy, the review text, learning.
		p.HasTool("a")
		p.HasExecutable("/bin/sh")
		p.KnowsDestination(story.EgressCall{Address: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 443, Host: "h"})
		match.Any(p.Files, "/etc/passwd")
		p.KnownFlow(Flow{Tool: "t", Data: "/tmp/*", Destination: "10.0.0.1:443"}, 5000, 10)
		BuildKernelPolicy(d, nil)
		(&File{Path: "p.yaml", Prof: p}).WriteText(io.Discard)
		cfg := LearningConfig{MinStories: 20, MinDuration: time.Hour, MaxEntries: 256}
		cfg.ContinueAfterComplete = true
		fa := &story.Facts{
			Tools:     []story.ToolCall{{Name: "t"}},
			Functions: map[string][]string{"tool": {"fn"}},
			Execs:     []story.ExecCall{{Path: "/bin/true"}},
			Files:     []story.FileAccess{{Path: "/tmp/x/1/y", Read: true}},
			Egress:    []story.EgressCall{{Address: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), Port: 443}},
			Connects:  1,
		}
		p.Learn(fa, true, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Hour), cfg, match.MustCompile([]string{"/tmp/*"}))
		p.RefreshVolume()
		if _, err := Marshal(d); err != nil {
			t.Fatalf("marshal after learning: %v", err)
		}
	})
}
