package attackstoryprocessor

import (
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/policy"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// newPolicies resolves the configuration of every workloads entry.
func newPolicies(cfg *Config) *policy.Set {
	global := match.MustCompile(cfg.SensitivePaths)
	ps := &policy.Set{Deflt: &policy.Policy{Mode: cfg.DefaultMode, Sensitive: global}}
	for i, w := range cfg.Workloads {
		p := &policy.Policy{Mode: w.Mode, MaxBytes: w.MaxEgressBytes, MaxConnects: w.MaxConnects}
		if p.Mode == "" {
			p.Mode = cfg.DefaultMode
		}
		if len(w.AllowedTools) > 0 {
			p.AllowedTools = make(map[string]struct{}, len(w.AllowedTools))
			for _, t := range w.AllowedTools {
				p.AllowedTools[strings.TrimSpace(t)] = struct{}{}
			}
		}
		for _, d := range w.AllowedDestinations {
			if m, err := match.ParseDest(d); err == nil {
				p.AllowedDests = append(p.AllowedDests, m)
				p.AllowedRaw = append(p.AllowedRaw, d)
			}
		}
		p.Sensitive = append(append([]match.Path{}, global...), match.MustCompile(w.SensitivePaths)...)
		for _, fl := range w.AllowedFlows {
			m, err := match.ParseDest(fl.Destination)
			if err != nil {
				continue // Validate refused it
			}
			r := policy.Flow{Tool: strings.TrimSpace(fl.Tool), Dest: m, MaxBytes: fl.MaxBytes}
			if fl.Data != "" {
				pat, err := match.Compile(fl.Data)
				if err != nil {
					continue
				}
				r.Data = &pat
			}
			p.Flows = append(p.Flows, r)
		}
		var parts []string
		for _, k := range story.SortedKeys(w.Match) {
			parts = append(parts, k+"="+w.Match[k])
		}
		p.ConfiguredFor = "workloads[" + strconv.Itoa(i) + "] (" + strings.Join(parts, ", ") + ")"
		ps.Entries = append(ps.Entries, policy.Entry{Match: w.Match, P: p})
	}
	return ps
}
