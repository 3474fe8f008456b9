// Package sentinel ships the Azure resources that the AgentTrail "sentinel" exporter
// (exporter/sentinelexporter) writes to: the schemas of the two custom Log Analytics tables
// (tables.json) and the ARM template of the data collection rule (dcr.json). README.md explains
// the deployment. The files are embedded so that tests and tools read the copies shipped here.
package sentinel // import "github.com/agenttrail/agenttrail/distributions/agenttrail/sentinel"

import (
	_ "embed"
	"encoding/json"
)

// TablesJSON is tables.json: the custom table schemas.
//
//go:embed tables.json
var TablesJSON []byte

// DCRTemplateJSON is dcr.json: the ARM template of the data collection rule.
//
//go:embed dcr.json
var DCRTemplateJSON []byte

// Column is one column of a custom table.
type Column struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

// Table is one custom table and the DCR stream that feeds it.
type Table struct {
	Name        string   `json:"name"`
	Stream      string   `json:"stream"`
	Description string   `json:"description"`
	Columns     []Column `json:"columns"`
}

// Tables returns the tables declared in tables.json.
func Tables() ([]Table, error) {
	var doc struct {
		Tables []Table `json:"tables"`
	}
	if err := json.Unmarshal(TablesJSON, &doc); err != nil {
		return nil, err
	}
	return doc.Tables, nil
}
