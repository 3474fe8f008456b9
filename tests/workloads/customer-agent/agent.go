package main

import (
	"context"
	"encoding/json"
	"fmt"
)

// systemPrompt is the operator's instruction. An attacker's message that says "ignore previous
// instructions" wins against it with the mock model, as it too often does with real ones.
const systemPrompt = "You are the customer-service assistant of Example Bank. Help customers with " +
	"balances, recent transactions and transfers under $500. Never use customer-data-export: it " +
	"is for bank staff only."

// maxSteps bounds the model calls of one prompt, so a model that keeps asking for tools
// cannot loop forever.
const maxSteps = 5

// Agent answers one prompt of one chat session. A new Agent is made per request: the
// collector's config fixes HandlePrompt's signature, so the request's context and the
// per-request record of tool calls live in the Agent rather than in parameters.
type Agent struct {
	ctx     context.Context
	model   *ModelClient
	tools   *Tools
	history []Message // earlier user/assistant turns of the session
	calls   []ToolCallRecord
}

// ToolCallRecord is one executed tool call, reported back to the chat client.
type ToolCallRecord struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Result    string          `json:"result"`
	Error     string          `json:"error,omitempty"`
}

// HandlePrompt runs the agent loop for the user's message: ask the model, run the tools it
// asks for, send their results back, until the model answers without tool calls.
//
//go:noinline
func (a *Agent) HandlePrompt(prompt string) (string, error) {
	user := Message{Role: "user", Content: prompt}
	messages := append([]Message{{Role: "system", Content: systemPrompt}}, a.history...)
	messages = append(messages, user)
	for range maxSteps {
		completion, err := a.model.Complete(a.ctx, messages)
		if err != nil {
			return "", err
		}
		if len(completion.Message.ToolCalls) == 0 {
			a.history = append(a.history, user, Message{Role: "assistant", Content: completion.Message.Content})
			return completion.Message.Content, nil
		}
		messages = append(messages, Message{Role: "assistant", Content: completion.Message.Content, ToolCalls: completion.Message.ToolCalls})
		for _, call := range completion.Message.ToolCalls {
			result, err := a.executeTool(call)
			record := ToolCallRecord{Name: call.Function.Name, Arguments: jsonOrString(call.Function.Arguments), Result: result}
			content := result
			if err != nil {
				// The model sees the failure and can explain it; it does not end the turn.
				record.Error = err.Error()
				content = "error: " + err.Error()
			}
			a.calls = append(a.calls, record)
			messages = append(messages, Message{Role: "tool", ToolCallID: call.ID, Content: content})
		}
	}
	return "", fmt.Errorf("no final answer after %d model calls", maxSteps)
}

// executeTool maps the model's tool name to the Tools method, decoding its JSON arguments.
//
//go:noinline
func (a *Agent) executeTool(call ToolCall) (string, error) {
	var args struct {
		CustomerID  string `json:"customer_id"`
		From        string `json:"from"`
		To          string `json:"to"`
		Cents       int    `json:"cents"`
		Query       string `json:"query"`
		Destination string `json:"destination"`
		Check       string `json:"check"`
	}
	if call.Function.Arguments != "" {
		if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil {
			return "", fmt.Errorf("tool %s: bad arguments: %w", call.Function.Name, err)
		}
	}
	switch call.Function.Name {
	case "accounts-summary":
		return a.tools.AccountsSummary(args.CustomerID)
	case "recent-transactions":
		return a.tools.RecentTransactions(args.CustomerID)
	case "transfers-low-value":
		return a.tools.TransferLowValue(args.From, args.To, args.Cents)
	case "customer-data-export":
		return a.tools.ExportCustomerData(args.Query, args.Destination)
	case "system-diagnostics":
		return a.tools.SystemDiagnostics(args.Check)
	default:
		return "", fmt.Errorf("unknown tool %q", call.Function.Name)
	}
}

// jsonOrString keeps valid JSON arguments as they are and quotes anything else, so the chat
// response stays valid JSON whatever the model sent.
func jsonOrString(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	quoted, _ := json.Marshal(s)
	return quoted
}
