// Command mcpstory is the agent of the receiver's end-to-end MCP story
// (TestMCPStory): a Go agent on the official MCP Go SDK (github.com/modelcontextprotocol/go-sdk,
// pinned in go.mod) whose model, an OpenAI-shaped chat completions endpoint over plain HTTP,
// decides which MCP tools to call.
//
//	mcpstory agent MODEL_URL   spawns "mcpstory server" over stdio, prints "ready", then per stdin
//	                           line "prompt TEXT" runs HandlePrompt and prints "ok prompt N" (N tool calls)
//	mcpstory server            the MCP server over stdio with the tools read_file and fetch
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type pathArgs struct {
	Path string `json:"path" jsonschema:"the file to read"`
}

type urlArgs struct {
	URL string `json:"url" jsonschema:"the URL to fetch"`
}

func server() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "story-files", Version: "v0.1.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "read_file", Description: "Reads a file."},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
			b, err := os.ReadFile(in.Path)
			if err != nil {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "fetch", Description: "Fetches a URL."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in urlArgs) (*mcp.CallToolResult, any, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
			if err != nil {
				return nil, nil, err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil, nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
		})
	return s
}

// message is a chat completions message, as far as this agent uses it.
type message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Agent loops prompt -> model -> MCP tools -> model, as agent frameworks do.
type Agent struct {
	model string
	http  *http.Client
	cs    *mcp.ClientSession
	tools []any
}

// HandlePrompt is the agent's entry point for one user prompt (the traced prompt function).
//
//go:noinline
func (a *Agent) HandlePrompt(prompt string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := []message{{Role: "user", Content: prompt}}
	calls := 0
	for range 4 {
		reply, err := a.callModel(msgs)
		if err != nil {
			return calls, err
		}
		if len(reply.ToolCalls) == 0 {
			return calls, nil
		}
		msgs = append(msgs, reply)
		for _, tc := range reply.ToolCalls {
			var args map[string]any
			if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil {
				return calls, fmt.Errorf("tool arguments: %w", err)
			}
			r, err := a.cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.Function.Name, Arguments: args})
			if err != nil {
				return calls, err
			}
			calls++
			var text strings.Builder
			for _, c := range r.Content {
				if t, ok := c.(*mcp.TextContent); ok {
					text.WriteString(t.Text)
				}
			}
			msgs = append(msgs, message{Role: "tool", ToolCallID: tc.ID, Content: text.String()})
		}
	}
	return calls, fmt.Errorf("the model did not finish in 4 turns")
}

// callModel sends the conversation to the model (the traced inference function).
//
//go:noinline
func (a *Agent) callModel(msgs []message) (message, error) {
	body, err := json.Marshal(map[string]any{"model": "model-x", "messages": msgs, "tools": a.tools})
	if err != nil {
		return message{}, err
	}
	resp, err := a.http.Post(a.model, "application/json", bytes.NewReader(body))
	if err != nil {
		return message{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message message `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return message{}, fmt.Errorf("model response: %w", err)
	}
	if len(out.Choices) == 0 {
		return message{}, fmt.Errorf("model response without choices")
	}
	return out.Choices[0].Message, nil
}

func agent(modelURL string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "story-agent", Version: "v0.1.0"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.CommandTransport{Command: exec.Command(self, "server")}, nil)
	if err != nil {
		return err
	}
	defer cs.Close()
	lt, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		return err
	}
	a := &Agent{model: modelURL, http: &http.Client{Timeout: 30 * time.Second}, cs: cs}
	for _, t := range lt.Tools {
		a.tools = append(a.tools, map[string]any{"type": "function", "function": map[string]any{"name": t.Name, "description": t.Description, "parameters": t.InputSchema}})
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		prompt, ok := strings.CutPrefix(sc.Text(), "prompt ")
		if !ok {
			fmt.Println("usage: prompt TEXT")
			continue
		}
		n, err := a.HandlePrompt(prompt)
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("ok prompt", n)
	}
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "server":
		err = server().Run(context.Background(), &mcp.StdioTransport{})
	case len(os.Args) == 3 && os.Args[1] == "agent":
		err = agent(os.Args[2])
	default:
		err = fmt.Errorf("usage: mcpstory agent MODEL_URL | server")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpstory:", err)
		os.Exit(1)
	}
}
