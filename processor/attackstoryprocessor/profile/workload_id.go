package profile

import (
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// WorkloadID identifies the workload a story belongs to, and so its profile: namespace,
// controller and container in Kubernetes, else service.name and executable on a host.
type WorkloadID struct {
	Key   string
	Attrs [][2]string // the attributes the key is made of, in key order
}

func WorkloadOf(res pcommon.Map) WorkloadID {
	ns := story.AttrStr(res, story.AttrK8sNamespace)
	if ns != "" {
		for _, k := range []string{story.AttrK8sDeployment, story.AttrK8sStatefulSet, story.AttrK8sDaemonSet} {
			if name := story.AttrStr(res, k); name != "" {
				w := WorkloadID{Attrs: [][2]string{{story.AttrK8sNamespace, ns}, {k, name}}}
				container := story.AttrStr(res, story.AttrK8sContainer)
				if container != "" {
					w.Attrs = append(w.Attrs, [2]string{story.AttrK8sContainer, container})
				}
				w.Key = ns + "/" + name + "/" + container
				return w
			}
		}
	}
	svc := story.AttrStr(res, story.AttrServiceName)
	exe := story.AttrStr(res, story.AttrProcessExecutable)
	w := WorkloadID{Key: svc + " " + exe}
	if svc != "" {
		w.Attrs = append(w.Attrs, [2]string{story.AttrServiceName, svc})
	}
	if exe != "" {
		w.Attrs = append(w.Attrs, [2]string{story.AttrProcessExecutable, exe})
	}
	return w
}

// WorkloadIDFromAttrs rebuilds the id from the attributes stored in a profile file.
func WorkloadIDFromAttrs(m map[string]string) WorkloadID {
	res := pcommon.NewMap()
	for k, v := range m {
		res.PutStr(k, v)
	}
	return WorkloadOf(res)
}
