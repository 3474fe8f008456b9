package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const testDB = `id,name,email,card_number,ssn,balance_cents
C1001,Maria Garcia,maria@example.com,4539578763621486,123-45-6789,123456
C1002,John Smith,john@example.com,5555555555554444,234-56-7890,60000
C1003,Yuki Tanaka,yuki@example.com,4012888888881881,456-78-9012,100
`

func newTestTools(t *testing.T) (*Tools, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(path, []byte(testDB), 0o644); err != nil {
		t.Fatal(err)
	}
	tools, err := NewTools(path)
	if err != nil {
		t.Fatal(err)
	}
	return tools, path
}

func TestExecuteTool(t *testing.T) {
	tools, _ := newTestTools(t)
	a := &Agent{tools: tools}
	run := func(name, args string) (string, error) {
		return a.executeTool(ToolCall{ID: "call_1", Type: "function", Function: FunctionCall{Name: name, Arguments: args}})
	}
	if got, err := run("accounts-summary", `{"customer_id":"C1001"}`); err != nil || got != "C1001 Maria Garcia: balance $1,234.56" {
		t.Errorf("accounts-summary: %q, %v", got, err)
	}
	if _, err := run("accounts-summary", `{"customer_id":"C9"}`); err == nil {
		t.Error("unknown customer accepted")
	}
	if got, err := run("recent-transactions", `{"customer_id":"C1002"}`); err != nil || strings.Count(got, "card payment") != 3 {
		t.Errorf("recent-transactions: %q, %v", got, err)
	}
	for _, tc := range []struct {
		args, want string
	}{
		{`{"from":"C1001","to":"C1002","cents":49999}`, "transferred $499.99 from C1001 to C1002 (ref T0001)"},
		{`{"from":"C1001","to":"C1002","cents":50000}`, "refused"},
		{`{"from":"C1001","to":"C1002","cents":0}`, "positive"},
		{`{"from":"C1001","to":"C1001","cents":100}`, "same account"},
		{`{"from":"C1003","to":"C1001","cents":101}`, "insufficient funds in C1003"},
		{`{"from":"C1001","to":"C9","cents":100}`, "unknown customer"},
	} {
		got, err := run("transfers-low-value", tc.args)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("transfers-low-value %s: %q, want %q", tc.args, got, tc.want)
		}
	}
	if _, err := run("delete-bank", `{}`); err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Errorf("unknown tool: %v", err)
	}
	if _, err := run("accounts-summary", `not json`); err == nil {
		t.Error("bad arguments accepted")
	}
}

func TestExportCustomerData(t *testing.T) {
	tools, path := newTestTools(t)
	var got []byte
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
	}))
	defer sink.Close()

	// The export reads the file at call time: a row added after start is exported.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("C1004,Wei Zhang,wei@example.com,4111111111111111,345-67-8901,1\n")
	f.Close()

	res, err := tools.ExportCustomerData("SELECT * FROM customers", sink.URL+"/upload")
	if err != nil {
		t.Fatal(err)
	}
	want := "exported 4 records (" + strconv.Itoa(len(got)) + " bytes)"
	if res != want {
		t.Errorf("result %q, want %q", res, want)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	var first map[string]any
	if len(lines) != 4 || json.Unmarshal([]byte(lines[0]), &first) != nil || first["card_number"] != "4539578763621486" || first["ssn"] != "123-45-6789" {
		t.Errorf("body %s", got)
	}
	if _, err := tools.ExportCustomerData("x", "ftp://127.0.0.1/"); err == nil {
		t.Error("non-http destination accepted")
	}
}

func TestFormatCents(t *testing.T) {
	for cents, want := range map[int64]string{0: "$0.00", 5: "$0.05", 123456: "$1,234.56", 100000000: "$1,000,000.00", -2000: "-$20.00"} {
		if got := formatCents(cents); got != want {
			t.Errorf("formatCents(%d) = %q, want %q", cents, got, want)
		}
	}
}
