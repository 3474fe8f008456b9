package attackstoryprocessor

import (
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// policy is the resolved configuration of one workload.
type policy struct {
	mode          profile.Mode
	allowedTools  map[string]struct{} // nil: no boundary declared
	allowedDests  []match.Dest        // nil: no boundary declared
	allowedRaw    []string
	sensitive     []match.Path
	maxBytes      int64
	maxConnects   int
	flows         []flowRule
	configuredFor string // a description of the workloads entry, "" for default_mode
}

// flowRule is one parsed allowed_flows entry.
type flowRule struct {
	raw      FlowConfig
	tool     string
	data     *match.Path // nil: any sensitive file
	dest     match.Dest
	maxBytes int64
}

type policies struct {
	entries []policyEntry
	deflt   *policy
}

type policyEntry struct {
	match map[string]string
	p     *policy
}

func newPolicies(cfg *Config) *policies {
	global := match.MustCompile(cfg.SensitivePaths)
	ps := &policies{deflt: &policy{mode: cfg.DefaultMode, sensitive: global}}
	for i, w := range cfg.Workloads {
		p := &policy{mode: w.Mode, maxBytes: w.MaxEgressBytes, maxConnects: w.MaxConnects}
		if p.mode == "" {
			p.mode = cfg.DefaultMode
		}
		if len(w.AllowedTools) > 0 {
			p.allowedTools = make(map[string]struct{}, len(w.AllowedTools))
			for _, t := range w.AllowedTools {
				p.allowedTools[strings.TrimSpace(t)] = struct{}{}
			}
		}
		for _, d := range w.AllowedDestinations {
			if m, err := match.ParseDest(d); err == nil {
				p.allowedDests = append(p.allowedDests, m)
				p.allowedRaw = append(p.allowedRaw, d)
			}
		}
		p.sensitive = append(append([]match.Path{}, global...), match.MustCompile(w.SensitivePaths)...)
		for _, fl := range w.AllowedFlows {
			m, err := match.ParseDest(fl.Destination)
			if err != nil {
				continue // Validate refused it
			}
			r := flowRule{raw: fl, tool: strings.TrimSpace(fl.Tool), dest: m, maxBytes: fl.MaxBytes}
			if fl.Data != "" {
				pat, err := match.Compile(fl.Data)
				if err != nil {
					continue
				}
				r.data = &pat
			}
			p.flows = append(p.flows, r)
		}
		var parts []string
		for _, k := range story.SortedKeys(w.Match) {
			parts = append(parts, k+"="+w.Match[k])
		}
		p.configuredFor = "workloads[" + strconv.Itoa(i) + "] (" + strings.Join(parts, ", ") + ")"
		ps.entries = append(ps.entries, policyEntry{match: w.Match, p: p})
	}
	return ps
}

// resolve returns the policy of the first workloads entry that matches the resource.
func (ps *policies) resolve(res pcommon.Map) *policy {
	for _, e := range ps.entries {
		ok := true
		for k, want := range e.match {
			if story.AttrStr(res, k) != want {
				ok = false
				break
			}
		}
		if ok {
			return e.p
		}
	}
	return ps.deflt
}

func (p *policy) destinationAllowed(e story.EgressCall) bool {
	for _, d := range p.allowedDests {
		if d.Matches(e.Addr, e.Port, e.Host) {
			return true
		}
	}
	return false
}

// declaredFlow reports whether an allowed_flows entry covers tool sending the file read (path)
// to e with n bytes in the story. When none does, over is the index of the first entry that
// names this tool, data and destination but allows fewer bytes (-1 if none), for the finding.
func (p *policy) declaredFlow(tool, path string, e story.EgressCall, n int64) (covered bool, over int) {
	over = -1
	for i := range p.flows {
		r := &p.flows[i]
		if r.tool != "" && r.tool != tool {
			continue
		}
		if r.data != nil && !r.data.Match(path) {
			continue
		}
		if !r.dest.Matches(e.Addr, e.Port, e.Host) {
			continue
		}
		if r.maxBytes > 0 && n > r.maxBytes {
			if over < 0 {
				over = i
			}
			continue
		}
		return true, -1
	}
	return false, over
}
