package finding

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

const (
	// MaxStoryWorkloads bounds the workloads (one per workload and node) a finding names in its
	// OCSF resources[] and its narrative: a story the gateway joined across nodes holds a few
	// (the agent, the services its tools called), and a story whose spans name thousands of
	// resources must not make a finding of that size. The rest are counted, never left out
	// silently.
	MaxStoryWorkloads = 8
	// MaxStoryNodes bounds the nodes a finding lists in unmapped.nodes, for the same reason.
	MaxStoryNodes = 16
	// maxNameRunes bounds a node or workload name taken from a resource attribute (253 is the
	// longest DNS name, which a Kubernetes node name is).
	maxNameRunes = 253
)

// storyWorkload is one workload on one node whose spans are in the story.
type storyWorkload struct {
	res  pcommon.Map
	key  string // profile.WorkloadOf(res).Key
	node string // k8s.node.name, else host.name; "" when neither
	span int    // its first span in narrative order, the head for the head's workload
}

// storyPlaces are the workloads and nodes of a story's spans: the head's first, then in
// narrative order, each at most once, within MaxStoryWorkloads and MaxStoryNodes.
type storyPlaces struct {
	workloads        []storyWorkload
	workloadsOmitted int
	nodes            []string
	nodesOmitted     int
}

// nodeOf is the node a resource ran on: the Kubernetes node's name when the agent collector
// attributed it, else the host's name.
func nodeOf(res pcommon.Map) string {
	node := story.AttrStr(res, story.AttrK8sNodeName)
	if node == "" {
		node = story.AttrStr(res, story.AttrHostName)
	}
	return story.ShortenTo(node, maxNameRunes)
}

func placesOf(f *story.Facts) storyPlaces {
	var out storyPlaces
	if len(f.Spans) == 0 {
		return out
	}
	seen := map[string]bool{}
	seenNode := map[string]bool{}
	add := func(i int) {
		res := f.Spans[i].Scope.Src.Resource.Attributes()
		w := storyWorkload{res: res, key: profile.WorkloadOf(res).Key, node: nodeOf(res), span: i}
		if w.node != "" && !seenNode[w.node] {
			seenNode[w.node] = true
			if len(out.nodes) < MaxStoryNodes {
				out.nodes = append(out.nodes, w.node)
			} else {
				out.nodesOmitted++
			}
		}
		id := w.key + "\x00" + w.node
		if seen[id] {
			return
		}
		seen[id] = true
		if len(out.workloads) < MaxStoryWorkloads {
			out.workloads = append(out.workloads, w)
		} else {
			out.workloadsOmitted++
		}
	}
	add(f.Head)
	// Resources repeat span after span: the same Source is seen once.
	var last *story.Source
	for i, sp := range f.Spans {
		if sp.Scope.Src == last {
			continue
		}
		last = sp.Scope.Src
		add(i)
	}
	return out
}

// joined reports whether the story has spans of more than one node: a story the gateway
// joined across nodes, whose finding then names each of them.
func (p storyPlaces) joined() bool { return len(p.nodes)+p.nodesOmitted > 1 }
