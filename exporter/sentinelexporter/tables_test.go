package sentinelexporter

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/agenttrail/agenttrail/distributions/agenttrail/sentinel"
)

// compatible reports whether a decoded JSON value can be ingested into a column of type typ.
func compatible(typ string, v any) bool {
	switch typ {
	case "datetime":
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	case "string":
		_, ok := v.(string)
		return ok
	case "int", "long":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		return err == nil && (typ == "long" || (i >= -1<<31 && i < 1<<31))
	case "real":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Float64()
		return err == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "dynamic":
		return true
	}
	return false
}

func decodeRow(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var row map[string]any
	require.NoError(t, dec.Decode(&row), string(b))
	return row
}

func findingRows(t *testing.T, ld plog.Logs) []map[string]any {
	t.Helper()
	var rows []map[string]any
	var scratch bytes.Buffer
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		rl := ld.ResourceLogs().At(i)
		rc := newResourceCtx(rl.Resource(), nil)
		lrs := rl.ScopeLogs().At(0).LogRecords()
		for k := 0; k < lrs.Len(); k++ {
			b, ok := appendFindingRow(nil, &rc, lrs.At(k), &scratch)
			if ok {
				rows = append(rows, decodeRow(t, b))
			}
		}
	}
	return rows
}

// TestRowsMatchTables checks the exporter's rows against distributions/agenttrail/sentinel/
// tables.json: every key is a declared column of a compatible type, every column is written by
// some row, and the default stream names are the tables' streams.
func TestRowsMatchTables(t *testing.T) {
	tables, err := sentinel.Tables()
	require.NoError(t, err)
	byStream := map[string]sentinel.Table{}
	for _, tb := range tables {
		byStream[tb.Stream] = tb
	}
	require.Contains(t, byStream, defaultStreamFindings)
	require.Contains(t, byStream, defaultStreamSpans)

	// Findings: a full OCSF finding, a plain-text one and a map body.
	ld := makeFindings(1)
	lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	plain := lrs.AppendEmpty()
	plain.Body().SetStr("plain text finding")
	mb := lrs.AppendEmpty().Body().SetEmptyMap()
	mb.PutInt("class_uid", 2004)
	mb.PutEmptyMap("actor").PutEmptyMap("process").PutInt("pid", 1)
	findings := findingRows(t, ld)
	require.Len(t, findings, 3)

	// Spans: the rich span and a root span without optional fields.
	td := richTraces()
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty().SetSpanID(pcommon.SpanID{9})
	var spans []map[string]any
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		rc := newResourceCtx(rs.Resource(), nil)
		ss := rs.ScopeSpans().At(0)
		for k := 0; k < ss.Spans().Len(); k++ {
			spans = append(spans, decodeRow(t, appendSpanRow(nil, &rc, ss.Scope(), ss.Spans().At(k))))
		}
	}

	for stream, rows := range map[string][]map[string]any{defaultStreamFindings: findings, defaultStreamSpans: spans} {
		tb := byStream[stream]
		t.Run(tb.Name, func(t *testing.T) {
			types := map[string]string{}
			for _, c := range tb.Columns {
				types[c.Name] = c.Type
			}
			written := map[string]bool{}
			for _, row := range rows {
				require.Contains(t, row, "TimeGenerated", "every row has TimeGenerated")
				for k, v := range row {
					typ, ok := types[k]
					if !assert.True(t, ok, "row key %q is not a column of %s", k, tb.Name) {
						continue
					}
					assert.True(t, compatible(typ, v), "column %s (%s) got %T %v", k, typ, v, v)
					written[k] = true
				}
			}
			for _, c := range tb.Columns {
				assert.True(t, written[c.Name], "column %s of %s is never written by the exporter", c.Name, tb.Name)
			}
		})
	}
}
