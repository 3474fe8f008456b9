package ebpfreceiver

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// dump logs every span with its attributes and events when AGENTTRAIL_DUMP_SPANS is set, to
// see what a kernel test received (go test -v -run TestPythonAgent with the variable set).
func dump(t *testing.T, c collected) {
	t.Helper()
	if os.Getenv("AGENTTRAIL_DUMP_SPANS") == "" {
		return
	}
	for _, s := range c.spans {
		var sb strings.Builder
		fmt.Fprintf(&sb, "SPAN %s id=%s parent=%s dur=%v status=%v\n", s.Name(), s.SpanID(), s.ParentSpanID(), s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime()), s.Status().Message())
		for k, v := range s.Attributes().All() {
			fmt.Fprintf(&sb, "   %s = %s\n", k, strings.ReplaceAll(v.AsString(), "\n", "\n        "))
		}
		for i := 0; i < s.Events().Len(); i++ {
			ev := s.Events().At(i)
			fmt.Fprintf(&sb, "   EVENT %s\n", ev.Name())
			for k, v := range ev.Attributes().All() {
				fmt.Fprintf(&sb, "      %s = %s\n", k, strings.ReplaceAll(v.AsString(), "\n", "\n          "))
			}
		}
		t.Log(sb.String())
	}
}
