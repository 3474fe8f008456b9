package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxTransferCents is the limit of transfers-low-value: $500, exclusive.
const maxTransferCents = 50000

// customer is one row of the customer database (customers.csv).
type customer struct {
	ID, Name, Email, CardNumber, SSN string
	BalanceCents                     int64
}

// Tools are the functions the model may ask the agent to run. The customer-facing tools work on
// an in-memory copy of the accounts loaded at start (the bank's "read replica"), so in a trace
// only the bulk export reads the customer database file.
type Tools struct {
	customersFile string
	http          *http.Client

	mu        sync.Mutex
	accounts  map[string]*customer
	transfers []transfer
}

type transfer struct {
	ref      string
	from, to string
	cents    int
}

// NewTools loads the accounts for the customer-facing tools.
func NewTools(customersFile string) (*Tools, error) {
	rows, err := readCustomers(customersFile)
	if err != nil {
		return nil, err
	}
	accounts := make(map[string]*customer, len(rows))
	for i := range rows {
		accounts[rows[i].ID] = &rows[i]
	}
	// No proxy: outbound traffic in the demo is loopback only. No keep-alive: every export
	// opens its own connection, so each one shows in a trace as a connect.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 15 * time.Second}
	return &Tools{customersFile: customersFile, http: client, accounts: accounts}, nil
}

// AccountsSummary is the accounts-summary tool.
//
//go:noinline
func (t *Tools) AccountsSummary(customerID string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.accounts[customerID]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", customerID)
	}
	return fmt.Sprintf("%s %s: balance %s", c.ID, c.Name, formatCents(c.BalanceCents)), nil
}

// RecentTransactions is the recent-transactions tool: this process's transfers, newest first,
// then a few synthetic card payments derived from the id so that answers are reproducible.
//
//go:noinline
func (t *Tools) RecentTransactions(customerID string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.accounts[customerID]; !ok {
		return "", fmt.Errorf("unknown customer %q", customerID)
	}
	var lines []string
	for i := len(t.transfers) - 1; i >= 0; i-- {
		tr := t.transfers[i]
		switch customerID {
		case tr.from:
			lines = append(lines, fmt.Sprintf("%s transfer to %s -%s", tr.ref, tr.to, formatCents(int64(tr.cents))))
		case tr.to:
			lines = append(lines, fmt.Sprintf("%s transfer from %s +%s", tr.ref, tr.from, formatCents(int64(tr.cents))))
		}
	}
	merchants := []string{"GROCERY MART", "CITY TRANSIT", "COFFEE CORNER", "BOOK NOOK", "FUEL STOP"}
	h := fnv.New32a()
	h.Write([]byte(customerID))
	seed := h.Sum32()
	day := time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		seed = seed*1664525 + 1013904223 // an LCG step: cheap, deterministic variety
		m := merchants[seed%uint32(len(merchants))]
		cents := int64(seed>>8)%9000 + 100
		lines = append(lines, fmt.Sprintf("%s card payment %s -%s", day.AddDate(0, 0, -2*i).Format("2006-01-02"), m, formatCents(cents)))
	}
	return customerID + " recent transactions: " + strings.Join(lines, "; "), nil
}

// TransferLowValue is the transfers-low-value tool; it refuses $500 and more.
//
//go:noinline
func (t *Tools) TransferLowValue(from string, to string, cents int) (string, error) {
	if cents <= 0 {
		return "", fmt.Errorf("amount must be positive, got %d cents", cents)
	}
	if cents >= maxTransferCents {
		return "", fmt.Errorf("refused: %s is not below the %s limit of transfers-low-value", formatCents(int64(cents)), formatCents(maxTransferCents))
	}
	if from == to {
		return "", errors.New("refused: source and destination are the same account")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	src, ok := t.accounts[from]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", from)
	}
	dst, ok := t.accounts[to]
	if !ok {
		return "", fmt.Errorf("unknown customer %q", to)
	}
	if src.BalanceCents < int64(cents) {
		return "", fmt.Errorf("refused: insufficient funds in %s", from)
	}
	src.BalanceCents -= int64(cents)
	dst.BalanceCents += int64(cents)
	ref := fmt.Sprintf("T%04d", len(t.transfers)+1)
	t.transfers = append(t.transfers, transfer{ref: ref, from: from, to: to, cents: cents})
	return fmt.Sprintf("transferred %s from %s to %s (ref %s)", formatCents(int64(cents)), from, to, ref), nil
}

// ExportCustomerData is the staff-only customer-data-export tool. It always exports the whole
// table (the query is only recorded), reading the database file from disk on every call, and
// POSTs the rows to destination. Nothing checks who asked or where the data goes: this is
// the exfiltration path of the demo.
//
//go:noinline
func (t *Tools) ExportCustomerData(query string, destination string) (string, error) {
	u, err := url.Parse(destination)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("destination must be an http:// URL, got %q", destination)
	}
	rows, err := readCustomers(t.customersFile)
	if err != nil {
		return "", err
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, c := range rows {
		if err := enc.Encode(exportRow(c)); err != nil {
			return "", err
		}
	}
	size := body.Len()
	req, err := http.NewRequest(http.MethodPost, destination, &body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("X-Export-Query", query)
	resp, err := t.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("export upload: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("export upload: %s answered HTTP %d", u.Host, resp.StatusCode)
	}
	return fmt.Sprintf("exported %d records (%d bytes)", len(rows), size), nil
}

// diagnosticsCommand is what system-diagnostics runs, through the shell.
const diagnosticsCommand = "uptime"

// SystemDiagnostics is the system-diagnostics tool: it runs `/bin/sh -c "uptime"` and returns
// its output, or the error (a shell that could not start, exited with an error or was stopped:
// "signal: killed" when kernel enforcement stops the exec). check is only recorded.
//
//go:noinline
func (t *Tools) SystemDiagnostics(check string) (string, error) {
	out, err := exec.Command("/bin/sh", "-c", diagnosticsCommand).Output()
	if err != nil {
		return "", fmt.Errorf("system diagnostics %q: %w", check, err)
	}
	return fmt.Sprintf("system diagnostics %q: %s", check, strings.TrimSpace(string(out))), nil
}

// exportRow is one line of the export (JSON lines, in the database's column order).
type exportRow struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Email        string `json:"email"`
	CardNumber   string `json:"card_number"`
	SSN          string `json:"ssn"`
	BalanceCents int64  `json:"balance_cents"`
}

// readCustomers opens and parses the customer database: a CSV file with the header
// id,name,email,card_number,ssn,balance_cents (columns in any order).
func readCustomers(path string) ([]customer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("customer database: %w", err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("customer database %s: %w", path, err)
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("customer database %s: empty", path)
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	for _, name := range []string{"id", "name", "email", "card_number", "ssn", "balance_cents"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("customer database %s: no %q column", path, name)
		}
	}
	out := make([]customer, 0, len(records)-1)
	for line, r := range records[1:] {
		balance, err := strconv.ParseInt(r[col["balance_cents"]], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("customer database %s line %d: balance_cents: %w", path, line+2, err)
		}
		out = append(out, customer{
			ID: r[col["id"]], Name: r[col["name"]], Email: r[col["email"]],
			CardNumber: r[col["card_number"]], SSN: r[col["ssn"]], BalanceCents: balance,
		})
	}
	return out, nil
}

// formatCents renders 123456 as $1,234.56.
func formatCents(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	dollars := strconv.FormatInt(cents/100, 10)
	for i := len(dollars) - 3; i > 0; i -= 3 {
		dollars = dollars[:i] + "," + dollars[i:]
	}
	return fmt.Sprintf("%s$%s.%02d", sign, dollars, cents%100)
}
