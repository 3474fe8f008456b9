package splunkhecexporter

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/agenttrail/agenttrail/internal/exporterkit"
)

func TestLogBody(t *testing.T) {
	tests := []struct {
		name   string
		set    func(pcommon.Value)
		want   any
		wantOK bool
	}{
		{"JSON object string is embedded", func(v pcommon.Value) { v.SetStr(`{"class_uid":2004}`) }, json.RawMessage(`{"class_uid":2004}`), true},
		{"JSON array string is embedded", func(v pcommon.Value) { v.SetStr(`[1,2]`) }, json.RawMessage(`[1,2]`), true},
		{"surrounding whitespace is trimmed", func(v pcommon.Value) { v.SetStr(" \n{\"a\":1}\n") }, json.RawMessage(`{"a":1}`), true},
		{"invalid JSON stays a string", func(v pcommon.Value) { v.SetStr(`{"a":`) }, `{"a":`, true},
		{"JSON scalar stays a string", func(v pcommon.Value) { v.SetStr(`123`) }, `123`, true},
		{"plain text", func(v pcommon.Value) { v.SetStr("user login") }, "user login", true},
		{"empty string is dropped", func(v pcommon.Value) { v.SetStr("") }, nil, false},
		{"empty value is dropped", func(pcommon.Value) {}, nil, false},
		{"map", func(v pcommon.Value) { v.SetEmptyMap().PutInt("n", 1) }, map[string]any{"n": int64(1)}, true},
		{"int", func(v pcommon.Value) { v.SetInt(7) }, int64(7), true},
		{"bool", func(v pcommon.Value) { v.SetBool(true) }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := pcommon.NewValueEmpty()
			tt.set(v)
			got, ok := logBody(v)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestMergeValue(t *testing.T) {
	tests := []struct {
		name string
		key  string
		v    any
		want map[string]any
	}{
		{"scalar", "k", "v", map[string]any{"k": "v"}},
		{"flat array kept", "tools", []any{"a", int64(1)}, map[string]any{"tools": []any{"a", int64(1)}}},
		{"nested array as JSON string", "m", []any{[]any{1}, map[string]any{"a": 1}}, map[string]any{"m": `[[1],{"a":1}]`}},
		{"maps flattened", "agent", map[string]any{"name": "x", "model": map[string]any{"id": "gpt"}}, map[string]any{"agent.name": "x", "agent.model.id": "gpt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]any{}
			mergeValue(got, tt.key, tt.v)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSelectLogs(t *testing.T) {
	ld := plog.NewLogs()
	for r := 0; r < 2; r++ {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutInt("r", int64(r))
		for s := 0; s < 2; s++ {
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName("scope")
			for i := 0; i < 3; i++ {
				sl.LogRecords().AppendEmpty().Body().SetInt(int64(r*6 + s*3 + i))
			}
		}
	}
	out := exporterkit.SelectLogs(ld, func(i int) bool { return i == 4 || i >= 9 })
	assert.Equal(t, 4, out.LogRecordCount())
	assert.Equal(t, 2, out.ResourceLogs().Len(), "resources without selected records are not copied")
	first := out.ResourceLogs().At(0)
	assert.Equal(t, 1, first.ScopeLogs().Len())
	assert.Equal(t, int64(4), first.ScopeLogs().At(0).LogRecords().At(0).Body().Int())
	r, _ := out.ResourceLogs().At(1).Resource().Attributes().Get("r")
	assert.Equal(t, int64(1), r.Int())
	assert.Equal(t, "scope", out.ResourceLogs().At(1).ScopeLogs().At(0).Scope().Name())
	assert.Equal(t, 3, out.ResourceLogs().At(1).ScopeLogs().At(0).LogRecords().Len())
}

func TestSelectSpans(t *testing.T) {
	td := makeTraces(10) // resource 0: even spans, resource 1: odd spans
	out := exporterkit.SelectSpans(td, func(i int) bool { return i >= 7 })
	assert.Equal(t, 3, out.SpanCount())
	assert.Equal(t, 1, out.ResourceSpans().Len())
	svc, _ := out.ResourceSpans().At(0).Resource().Attributes().Get("service.name")
	assert.Equal(t, "agent-1", svc.Str())
}
