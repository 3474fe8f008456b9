// Command mcptarget is the traced program of the bench's MCP section. It waits for a line on
// stdin (so the harness can attach first), then runs -reps repetitions of -n operations and
// prints each repetition's nanoseconds per operation, one per line:
//
//	-mode mcp   an MCP tools/call over stdio pipes (github.com/modelcontextprotocol/go-sdk, pinned
//	            in go.mod): the client spawns "mcptarget server" and calls its echo tool
//	-mode pipe  a 64-byte write(2) of a non-JSON line on a pipe a goroutine drains
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoArgs struct {
	Text string `json:"text" jsonschema:"the text to return"`
}

func serve() error {
	s := mcp.NewServer(&mcp.Implementation{Name: "agenttrail-bench-server", Version: "v0.1.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns its text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	return s.Run(context.Background(), &mcp.StdioTransport{})
}

// mcpCalls connects to a spawned server after the go line (the first bytes on the pipes, the
// initialize request, then pass the receiver's probes: that is what marks them as JSON-RPC).
func mcpCalls(n, reps int) error {
	bufio.NewReader(os.Stdin).ReadString('\n')
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "agenttrail-bench-client", Version: "v0.1.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: exec.Command(self, "-mode", "server")}, nil)
	if err != nil {
		return err
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		return err
	}
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "the quick brown fox jumps over the lazy dog"}}
	for r := 0; r < reps; r++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			res, err := cs.CallTool(ctx, params)
			if err != nil {
				return err
			}
			if res.IsError {
				return fmt.Errorf("echo returned an error")
			}
		}
		fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
	}
	return nil
}

// pipeWrites writes lines that are not JSON (the first byte is not '{') to a pipe.
func pipeWrites(n, reps int) error {
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := rd.Read(buf); err != nil {
				return
			}
		}
	}()
	line := []byte("level=info msg=\"a plain log line, not JSON-RPC\" component=bench n=1\n")[:64]
	bufio.NewReader(os.Stdin).ReadString('\n')
	for r := 0; r < reps; r++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := wr.Write(line); err != nil {
				return err
			}
		}
		fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
	}
	return wr.Close()
}

func main() {
	mode := flag.String("mode", "mcp", "mcp: MCP tools/call over stdio pipes; pipe: 64-byte non-JSON writes on a pipe; server: the MCP server (spawned by mcp)")
	n := flag.Int("n", 2000, "operations per repetition")
	reps := flag.Int("reps", 3, "repetitions")
	flag.Parse()
	var err error
	switch *mode {
	case "server":
		err = serve()
	case "mcp":
		err = mcpCalls(*n, *reps)
	case "pipe":
		err = pipeWrites(*n, *reps)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcptarget:", err)
		os.Exit(1)
	}
}
