package policy

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// Policy is the resolved configuration of one workload.
type Policy struct {
	Mode          profile.Mode
	AllowedTools  map[string]struct{} // nil: no boundary declared
	AllowedDests  []match.Dest        // nil: no boundary declared
	AllowedRaw    []string
	Sensitive     []match.Path
	MaxBytes      int64
	MaxConnects   int
	Flows         []Flow
	ConfiguredFor string // a description of the workloads entry, "" for default_mode
}

// Flow is one parsed allowed_flows entry.
type Flow struct {
	Tool     string
	Data     *match.Path // nil: any sensitive file
	Dest     match.Dest
	MaxBytes int64
}

type Set struct {
	Entries []Entry
	Deflt   *Policy
}

type Entry struct {
	Match map[string]string
	P     *Policy
}

// Resolve returns the policy of the first workloads entry that matches the resource.
func (ps *Set) Resolve(res pcommon.Map) *Policy {
	for _, e := range ps.Entries {
		ok := true
		for k, want := range e.Match {
			if story.AttrStr(res, k) != want {
				ok = false
				break
			}
		}
		if ok {
			return e.P
		}
	}
	return ps.Deflt
}

func (p *Policy) DestinationAllowed(e story.EgressCall) bool {
	for _, d := range p.AllowedDests {
		if d.Matches(e.Addr, e.Port, e.Host) {
			return true
		}
	}
	return false
}

// DeclaredFlow reports whether an allowed_flows entry covers tool sending the file read (path)
// to e with n bytes in the story. When none does, over is the index of the first entry that
// names this tool, data and destination but allows fewer bytes (-1 if none), for the finding.
func (p *Policy) DeclaredFlow(tool, path string, e story.EgressCall, n int64) (covered bool, over int) {
	over = -1
	for i := range p.Flows {
		r := &p.Flows[i]
		if r.Tool != "" && r.Tool != tool {
			continue
		}
		if r.Data != nil && !r.Data.Match(path) {
			continue
		}
		if !r.Dest.Matches(e.Addr, e.Port, e.Host) {
			continue
		}
		if r.MaxBytes > 0 && n > r.MaxBytes {
			if over < 0 {
				over = i
			}
			continue
		}
		return true, -1
	}
	return false, over
}
