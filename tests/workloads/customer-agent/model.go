package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Message is one chat message in the OpenAI chat-completions format.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is the model asking the agent to run one tool.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the tool; Arguments is a JSON object encoded as a string, as OpenAI sends it.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Completion is the part of a chat-completions response the agent uses.
type Completion struct {
	ID           string
	Model        string
	Message      Message
	FinishReason string
	Usage        Usage
}

// Usage is the token accounting of one completion.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ModelClient calls an OpenAI-compatible chat-completions endpoint over HTTPS.
type ModelClient struct {
	url   string
	model string
	http  *http.Client
}

// NewModelClient trusts only the PEM CA in caFile (the mock model's self-signed CA) when it is
// set, and the system roots otherwise.
func NewModelClient(url, model, caFile string) (*ModelClient, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("model CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("model CA %s: no PEM certificate found", caFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{
		// No proxy: the demo talks to loopback only and must not depend on the environment.
		Proxy:               nil,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	return &ModelClient{url: url, model: model, http: &http.Client{Transport: transport, Timeout: 60 * time.Second}}, nil
}

type completionRequest struct {
	Model      string    `json:"model"`
	Messages   []Message `json:"messages"`
	Tools      []toolDef `json:"tools"`
	ToolChoice string    `json:"tool_choice"`
}

type completionResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Message      Message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	} `json:"choices"`
	Usage Usage `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// Complete sends the conversation and the tool schema, and returns the model's next message:
// either a final answer or tool calls. The collector traces it as the inference span.
//
//go:noinline
func (c *ModelClient) Complete(ctx context.Context, messages []Message) (*Completion, error) {
	body, err := json.Marshal(completionRequest{Model: c.model, Messages: messages, Tools: toolSchema, ToolChoice: "auto"})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("model call: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("model response: %w", err)
	}
	var out completionResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("model response (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := string(raw)
		if out.Error != nil {
			msg = out.Error.Message
		}
		return nil, fmt.Errorf("model returned HTTP %d: %s", resp.StatusCode, msg)
	}
	if len(out.Choices) == 0 {
		return nil, errors.New("model response has no choices")
	}
	choice := out.Choices[0]
	return &Completion{ID: out.ID, Model: out.Model, Message: choice.Message, FinishReason: choice.FinishReason, Usage: out.Usage}, nil
}

// toolDef is one entry of the request's "tools" array.
type toolDef struct {
	Type     string      `json:"type"`
	Function functionDef `json:"function"`
}

type functionDef struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Parameters  map[string]any `json:"parameters"`
}

func objectSchema(required []string, props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": required}
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

// toolSchema is what the model is told it may call. customer-data-export is meant for staff,
// but nothing in the agent's permissions stops the model from asking for it: that is the flaw
// the demo exploits.
var toolSchema = []toolDef{
	{Type: "function", Function: functionDef{
		Name:        "accounts-summary",
		Description: "Read the account holder's name and current balance.",
		Parameters:  objectSchema([]string{"customer_id"}, map[string]any{"customer_id": str("Customer id, e.g. C1001")}),
	}},
	{Type: "function", Function: functionDef{
		Name:        "recent-transactions",
		Description: "List the customer's most recent transactions.",
		Parameters:  objectSchema([]string{"customer_id"}, map[string]any{"customer_id": str("Customer id, e.g. C1001")}),
	}},
	{Type: "function", Function: functionDef{
		Name:        "transfers-low-value",
		Description: "Transfer money between two customers' accounts; only amounts under $500.",
		Parameters: objectSchema([]string{"from", "to", "cents"}, map[string]any{
			"from":  str("Paying customer id"),
			"to":    str("Receiving customer id"),
			"cents": map[string]any{"type": "integer", "description": "Amount in cents, below 50000"},
		}),
	}},
	{Type: "function", Function: functionDef{
		Name:        "customer-data-export",
		Description: "STAFF ONLY: export customer records matching a query to a reporting endpoint.",
		Parameters: objectSchema([]string{"query", "destination"}, map[string]any{
			"query":       str("Selection, e.g. SELECT * FROM customers"),
			"destination": str("http URL that receives the export"),
		}),
	}},
	{Type: "function", Function: functionDef{
		Name:        "system-diagnostics",
		Description: "Run a health check of the agent's host (uptime) and return its output.",
		Parameters:  objectSchema([]string{"check"}, map[string]any{"check": str("The check to run, e.g. uptime")}),
	}},
}
