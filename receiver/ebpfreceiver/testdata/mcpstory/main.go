// Command mcpstory is the receiver's MCP test program on the official MCP Go SDK
// (github.com/modelcontextprotocol/go-sdk, pinned in go.mod): the agent of the end-to-end MCP
// story (TestMCPStory), whose model, an OpenAI-shaped chat completions endpoint over plain HTTP,
// decides which MCP tools to call, and the plain client and server of TestGoMCPStdio and
// TestGoMCPStreamableHTTP. One server serves both (the tools read_file and fetch).
//
//	mcpstory agent MODEL_URL       spawns "mcpstory server" over stdio, prints "ready", then per stdin
//	                               line "prompt TEXT" runs HandlePrompt and prints "ok prompt N" (N tool calls)
//	mcpstory server [NAME]         the MCP server over stdio, named NAME (default story-files)
//	mcpstory serve-http ADDR       the same server over streamable HTTP (plain), until killed
//	mcpstory client-stdio FILE URL spawns "mcpstory server" and calls read_file(FILE), fetch(URL), read_file(/missing)
//	mcpstory client-http BASE FILE the same calls against the server at BASE over streamable HTTP
//
// The clients print one line per call: "call <tool> ok|error".
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// The server's names: the story's, and the plain client's (TestGoMCP* expect it in mcp.server.name).
const (
	storyServerName = "story-files"
	plainServerName = "agenttrail-go-server"
)

func server(name string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "v0.1.0"}, nil)
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

func calls(ctx context.Context, t mcp.Transport, file, url string) error {
	c := mcp.NewClient(&mcp.Implementation{Name: "agenttrail-go-client", Version: "v0.1.0"}, nil)
	cs, err := c.Connect(ctx, t, nil)
	if err != nil {
		return err
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		return err
	}
	for _, call := range []struct {
		tool string
		args map[string]any
	}{{"read_file", map[string]any{"path": file}}, {"fetch", map[string]any{"url": url}}, {"read_file", map[string]any{"path": "/missing"}}} {
		if call.tool == "fetch" && url == "" {
			continue
		}
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: call.tool, Arguments: call.args})
		if err != nil {
			return err
		}
		state := "ok"
		if r.IsError {
			state = "error"
		}
		fmt.Println("call", call.tool, state)
	}
	return nil
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "server":
		err = server(storyServerName).Run(context.Background(), &mcp.StdioTransport{})
	case len(os.Args) == 3 && os.Args[1] == "server":
		err = server(os.Args[2]).Run(context.Background(), &mcp.StdioTransport{})
	case len(os.Args) == 3 && os.Args[1] == "agent":
		err = agent(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "serve-http":
		var ln net.Listener
		if ln, err = net.Listen("tcp", os.Args[2]); err == nil {
			fmt.Println("listening", ln.Addr())
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server(plainServerName) }, nil)
			err = http.Serve(ln, h)
		}
	case len(os.Args) == 4 && os.Args[1] == "client-stdio":
		self, _ := os.Executable()
		err = calls(ctx, &mcp.CommandTransport{Command: exec.Command(self, "server", plainServerName)}, os.Args[2], os.Args[3])
	case len(os.Args) == 4 && os.Args[1] == "client-http":
		err = calls(ctx, &mcp.StreamableClientTransport{Endpoint: os.Args[2], DisableStandaloneSSE: true}, os.Args[3], "")
	default:
		err = fmt.Errorf("usage: mcpstory agent MODEL_URL | server [NAME] | serve-http ADDR | client-stdio FILE URL | client-http BASE FILE")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpstory:", err)
		os.Exit(1)
	}
}
