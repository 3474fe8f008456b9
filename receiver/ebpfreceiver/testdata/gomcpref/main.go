// Command gomcpref is an MCP client on the Go SDK (github.com/modelcontextprotocol/go-sdk,
// pinned in go.mod) driving the reference Node servers of internal/mcp/testdata/nodeclient
// (@modelcontextprotocol/server-filesystem and server-everything, pinned by its lockfile):
//
//	gomcpref filesystem DIR -- CMD ARGS...  spawns CMD over stdio (server-filesystem allowed DIR);
//	                                        reads DIR/notes.txt, lists DIR, reads DIR/missing.txt
//	gomcpref everything URL -- CMD ARGS...  spawns CMD over stdio (server-everything); echo (a
//	                                        secret in its message), get-sum, get-tiny-image,
//	                                        gzip-file-as-resource of URL unless it is "" (the server
//	                                        fetches it), get-sum with a string argument (isError),
//	                                        a resource read, a prompt
//	gomcpref everything-http ENDPOINT URL   the same calls against server-everything over
//	                                        streamable HTTP at ENDPOINT
//
// It prints one line per request: "call <tool> ok|error", "resource <n>", "prompt <n>".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type call struct {
	tool string
	args map[string]any
}

// run makes the calls; arg is the directory of filesystem, the URL for everything to fetch.
func run(ctx context.Context, t mcp.Transport, which, arg string) error {
	c := mcp.NewClient(&mcp.Implementation{Name: "agenttrail-go-ref-client", Version: "v0.1.0"}, nil)
	cs, err := c.Connect(ctx, t, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	fmt.Println("tools", len(tools.Tools))
	var plan []call
	if which == "filesystem" {
		plan = []call{
			{"read_text_file", map[string]any{"path": filepath.Join(arg, "notes.txt")}},
			{"list_directory", map[string]any{"path": arg}},
			{"read_text_file", map[string]any{"path": filepath.Join(arg, "missing.txt")}},
		}
	} else {
		plan = []call{
			{"echo", map[string]any{"message": "hello from agenttrail, token sk-live-0123456789abcdefghijkl"}},
			{"get-sum", map[string]any{"a": 2, "b": 40}},
			{"get-tiny-image", map[string]any{}},
		}
		if arg != "" {
			plan = append(plan, call{"gzip-file-as-resource", map[string]any{"name": "page.gz", "data": arg, "outputType": "resource"}})
		}
		plan = append(plan, call{"get-sum", map[string]any{"a": "two", "b": 40}})
	}
	for _, p := range plan {
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: p.tool, Arguments: p.args})
		if err != nil {
			return fmt.Errorf("tools/call %s: %w", p.tool, err)
		}
		state := "ok"
		if r.IsError {
			state = "error"
		}
		fmt.Println("call", p.tool, state)
	}
	if which == "filesystem" {
		return nil
	}
	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "demo://resource/dynamic/text/1"})
	if err != nil {
		return fmt.Errorf("resources/read: %w", err)
	}
	fmt.Println("resource", len(res.Contents))
	pr, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "simple-prompt"})
	if err != nil {
		return fmt.Errorf("prompts/get: %w", err)
	}
	fmt.Println("prompt", len(pr.Messages))
	return nil
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := errors.New("usage: gomcpref filesystem DIR -- CMD ARGS... | everything URL -- CMD ARGS... | everything-http ENDPOINT URL")
	args := os.Args[1:]
	sep := slices.Index(args, "--")
	switch {
	case len(args) == 3 && args[0] == "everything-http":
		err = run(ctx, &mcp.StreamableClientTransport{Endpoint: args[1], DisableStandaloneSSE: true}, "everything", args[2])
	case sep == 2 && args[0] == "filesystem" && len(args) > 3:
		err = run(ctx, &mcp.CommandTransport{Command: exec.Command(args[3], args[4:]...)}, "filesystem", args[1])
	case sep == 2 && args[0] == "everything" && len(args) > 3:
		// server-everything does not exit when its stdin closes: no need to wait 5 s for it.
		err = run(ctx, &mcp.CommandTransport{Command: exec.Command(args[3], args[4:]...), TerminateDuration: 500 * time.Millisecond}, "everything", args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gomcpref:", err)
		os.Exit(1)
	}
}
