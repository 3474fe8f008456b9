package sentinel

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Types a custom table column and a DCR stream declaration column can both have.
var columnTypes = map[string]bool{
	"string": true, "int": true, "long": true, "real": true, "boolean": true, "datetime": true, "dynamic": true,
}

var columnName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,44}$`)

func loadTables(t *testing.T) []Table {
	t.Helper()
	tables, err := Tables()
	require.NoError(t, err)
	require.Len(t, tables, 2)
	return tables
}

func TestTablesJSON(t *testing.T) {
	tables := loadTables(t)
	assert.Equal(t, "AgentTrailFindings_CL", tables[0].Name)
	assert.Equal(t, "AgentTrailSpans_CL", tables[1].Name)
	for _, tb := range tables {
		t.Run(tb.Name, func(t *testing.T) {
			assert.True(t, strings.HasSuffix(tb.Name, "_CL"), "custom tables end in _CL")
			assert.Equal(t, "Custom-"+tb.Name, tb.Stream)
			assert.NotEmpty(t, tb.Description)
			require.NotEmpty(t, tb.Columns)
			assert.Equal(t, Column{Name: "TimeGenerated", Type: "datetime"}, Column{Name: tb.Columns[0].Name, Type: tb.Columns[0].Type},
				"every custom table needs TimeGenerated (datetime)")
			seen := map[string]bool{}
			for _, c := range tb.Columns {
				assert.Regexp(t, columnName, c.Name)
				assert.True(t, columnTypes[c.Type], "column %s: unknown type %q", c.Name, c.Type)
				assert.NotEmpty(t, c.Description, "column %s", c.Name)
				assert.False(t, seen[strings.ToLower(c.Name)], "duplicate column %s", c.Name)
				seen[strings.ToLower(c.Name)] = true
			}
		})
	}
}

type armTemplate struct {
	Schema     string                    `json:"$schema"`
	Parameters map[string]map[string]any `json:"parameters"`
	Resources  []struct {
		Type       string `json:"type"`
		APIVersion string `json:"apiVersion"`
		Name       string `json:"name"`
		Location   string `json:"location"`
		Properties struct {
			Description              string `json:"description"`
			DataCollectionEndpointID string `json:"dataCollectionEndpointId"`
			StreamDeclarations       map[string]struct {
				Columns []Column `json:"columns"`
			} `json:"streamDeclarations"`
			Destinations struct {
				LogAnalytics []struct {
					WorkspaceResourceID string `json:"workspaceResourceId"`
					Name                string `json:"name"`
				} `json:"logAnalytics"`
			} `json:"destinations"`
			DataFlows []struct {
				Streams      []string `json:"streams"`
				Destinations []string `json:"destinations"`
				TransformKql string   `json:"transformKql"`
				OutputStream string   `json:"outputStream"`
			} `json:"dataFlows"`
		} `json:"properties"`
	} `json:"resources"`
	Outputs map[string]struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"outputs"`
}

func TestDCRTemplateMatchesTables(t *testing.T) {
	var tpl armTemplate
	dec := json.NewDecoder(strings.NewReader(string(DCRTemplateJSON)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&struct {
		*armTemplate
		ContentVersion string         `json:"contentVersion"`
		Metadata       map[string]any `json:"metadata"`
	}{armTemplate: &tpl}), "dcr.json parses with the expected structure")

	assert.Equal(t, "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", tpl.Schema)
	for _, p := range []string{"workspaceResourceId", "dataCollectionEndpointResourceId", "location", "dataCollectionRuleName"} {
		require.Contains(t, tpl.Parameters, p)
		assert.Equal(t, "string", tpl.Parameters[p]["type"], p)
	}
	assert.NotContains(t, tpl.Parameters["workspaceResourceId"], "defaultValue", "the workspace must be given")
	assert.NotContains(t, tpl.Parameters["dataCollectionEndpointResourceId"], "defaultValue", "the DCE must be given")

	require.Len(t, tpl.Resources, 1)
	dcr := tpl.Resources[0]
	assert.Equal(t, "Microsoft.Insights/dataCollectionRules", dcr.Type)
	assert.Equal(t, "[parameters('dataCollectionRuleName')]", dcr.Name)
	assert.Equal(t, "[parameters('location')]", dcr.Location)
	assert.Equal(t, "[parameters('dataCollectionEndpointResourceId')]", dcr.Properties.DataCollectionEndpointID)
	require.Len(t, dcr.Properties.Destinations.LogAnalytics, 1)
	dest := dcr.Properties.Destinations.LogAnalytics[0]
	assert.Equal(t, "[parameters('workspaceResourceId')]", dest.WorkspaceResourceID)

	tables := loadTables(t)
	assert.Len(t, dcr.Properties.StreamDeclarations, len(tables), "one stream per table, no other")
	require.Len(t, dcr.Properties.DataFlows, len(tables))
	for i, tb := range tables {
		decl, ok := dcr.Properties.StreamDeclarations[tb.Stream]
		require.True(t, ok, "stream %s declared", tb.Stream)
		want := make([]Column, len(tb.Columns))
		for j, c := range tb.Columns {
			want[j] = Column{Name: c.Name, Type: c.Type}
		}
		assert.Equal(t, want, decl.Columns, "stream %s declares the columns of %s, same names, types and order", tb.Stream, tb.Name)

		flow := dcr.Properties.DataFlows[i]
		assert.Equal(t, []string{tb.Stream}, flow.Streams)
		assert.Equal(t, []string{dest.Name}, flow.Destinations)
		assert.Equal(t, "source", flow.TransformKql, "rows go to the table unchanged")
		assert.Equal(t, "Custom-"+tb.Name, flow.OutputStream)
	}

	for _, o := range []string{"dataCollectionRuleId", "immutableId", "logsIngestionEndpoint"} {
		require.Contains(t, tpl.Outputs, o)
		assert.Equal(t, "string", tpl.Outputs[o].Type)
	}
	assert.Contains(t, tpl.Outputs["immutableId"].Value, ".immutableId]")
	assert.Contains(t, tpl.Outputs["logsIngestionEndpoint"].Value, ".logsIngestion.endpoint]")
}

// The az commands in README.md create the tables with the columns of tables.json.
func TestReadmeCommandsMatchTables(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	cmd := regexp.MustCompile(`az monitor log-analytics workspace table create [^\n]*`)
	found := map[string][]string{}
	for _, line := range cmd.FindAllString(text, -1) {
		fields := strings.Fields(line)
		var name string
		var cols []string
		for i := 0; i < len(fields); i++ {
			switch {
			case fields[i] == "--name" && i+1 < len(fields):
				name = fields[i+1]
			case fields[i] == "--columns":
				for j := i + 1; j < len(fields) && !strings.HasPrefix(fields[j], "--"); j++ {
					cols = append(cols, fields[j])
				}
			}
		}
		found[name] = cols
	}
	for _, tb := range loadTables(t) {
		var want []string
		for _, c := range tb.Columns {
			want = append(want, c.Name+"="+c.Type)
		}
		assert.Equal(t, want, found[tb.Name], "README command for %s", tb.Name)
	}
}
