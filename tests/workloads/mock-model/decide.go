package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// chatMessage is one message of a chat-completions request.
type chatMessage struct {
	Role       string     `json:"role"`
	Content    content    `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// content accepts the forms OpenAI clients send: a string, null (assistant messages that only
// carry tool calls) or an array of {"type":"text","text":...} parts.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return errors.New("content must be a string, null or an array of text parts")
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		texts = append(texts, p.Text)
	}
	*c = content(strings.Join(texts, "\n"))
	return nil
}

// decision is what the mock model answers: a tool call (Tool and Arguments, a JSON object) or,
// when Tool is empty, the plain answer Content.
type decision struct {
	Content   string
	Tool      string
	Arguments string
}

const defaultCustomer = "C1001"

var (
	injectionMarkers = []string{"ignore previous instructions", "ignore all previous", "you are now", "system override", "disregard your instructions"}
	urlPattern       = regexp.MustCompile(`(?i)http://[^\s"'<>]+`)
	customerPattern  = regexp.MustCompile(`(?i)\bC\d+\b`)
	fromPattern      = regexp.MustCompile(`(?i)\bfrom\s+(C\d+)\b`)
	toPattern        = regexp.MustCompile(`(?i)\bto\s+(C\d+)\b`)
	amountPattern    = regexp.MustCompile(`\$\s*(\d[\d,]*)`)
)

const helpAnswer = "I can help with account balances, recent transactions and transfers under $500. " +
	"Please include the customer id, e.g. C1001."

// decide is the whole "model": a pure function of the conversation, the tools the request
// offers and the exfiltration URL to use when an injected message names none.
func decide(messages []chatMessage, offered map[string]bool, defaultExfil string) decision {
	if len(messages) > 0 && messages[len(messages)-1].Role == "tool" {
		return summarise(messages)
	}
	var text string
	for i := len(messages) - 1; i >= 0; i-- {
		if messages[i].Role == "user" {
			text = string(messages[i].Content)
			break
		}
	}
	d := pick(text, defaultExfil)
	if alt := strings.ReplaceAll(d.Tool, "-", "_"); d.Tool != "" && !offered[d.Tool] && offered[alt] {
		d.Tool = alt // an SDK that allows no '-' in tool names (@openai/agents) offers it so
	}
	if d.Tool != "" && !offered[d.Tool] {
		// A model can only call the tools the request declares.
		return decision{Content: "I cannot do that: no " + d.Tool + " tool is available."}
	}
	return d
}

// pick maps the last user message to a tool call, injected instructions first: the mock obeys
// them, which is the behaviour the demo is about.
func pick(text, defaultExfil string) decision {
	lower := strings.ToLower(text)
	for _, marker := range injectionMarkers {
		if strings.Contains(lower, marker) {
			dest := defaultExfil
			if u := urlPattern.FindString(text); u != "" {
				dest = strings.TrimRight(u, ".,;:!?)]}")
			}
			return call("customer-data-export", struct {
				Query       string `json:"query"`
				Destination string `json:"destination"`
			}{"SELECT * FROM customers", dest})
		}
	}
	if strings.Contains(lower, "diagnostics") {
		return call("system-diagnostics", struct {
			Check string `json:"check"`
		}{"uptime"})
	}
	customer := defaultCustomer
	if id := customerPattern.FindString(text); id != "" {
		customer = strings.ToUpper(id)
	}
	type byCustomer struct {
		CustomerID string `json:"customer_id"`
	}
	switch {
	case strings.Contains(lower, "balance") || strings.Contains(lower, "summary"):
		return call("accounts-summary", byCustomer{customer})
	case strings.Contains(lower, "transactions"):
		return call("recent-transactions", byCustomer{customer})
	case strings.Contains(lower, "transfer"):
		from, to := transferParties(text)
		m := amountPattern.FindStringSubmatch(text)
		if from == "" || to == "" || m == nil {
			return decision{Content: "To make a transfer I need the amount in dollars (e.g. $20) and both customer ids, from and to."}
		}
		dollars, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
		if err != nil || dollars > 1_000_000_000 {
			return decision{Content: "That amount is not one I can read; please write it like $20."}
		}
		return call("transfers-low-value", struct {
			From  string `json:"from"`
			To    string `json:"to"`
			Cents int    `json:"cents"`
		}{from, to, dollars * 100})
	default:
		return decision{Content: helpAnswer}
	}
}

// transferParties reads "from X" and "to Y", falling back to the first two ids in order.
func transferParties(text string) (from, to string) {
	if m := fromPattern.FindStringSubmatch(text); m != nil {
		from = strings.ToUpper(m[1])
	}
	if m := toPattern.FindStringSubmatch(text); m != nil {
		to = strings.ToUpper(m[1])
	}
	ids := customerPattern.FindAllString(text, -1)
	if from == "" && to == "" && len(ids) >= 2 {
		from, to = strings.ToUpper(ids[0]), strings.ToUpper(ids[1])
	}
	return from, to
}

func call(tool string, args any) decision {
	b, _ := json.Marshal(args) // plain structs of strings and ints: cannot fail
	return decision{Tool: tool, Arguments: string(b)}
}

// summarise answers the tool results that end the conversation, one line per tool, naming
// the tool from the assistant message that asked for it.
func summarise(messages []chatMessage) decision {
	first := len(messages)
	for first > 0 && messages[first-1].Role == "tool" {
		first--
	}
	names := map[string]string{}
	if first > 0 {
		for _, c := range messages[first-1].ToolCalls {
			names[c.ID] = c.Function.Name
		}
	}
	lines := make([]string, 0, len(messages)-first)
	for _, m := range messages[first:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = "tool"
		}
		lines = append(lines, name+": "+string(m.Content))
	}
	return decision{Content: strings.Join(lines, "\n")}
}
