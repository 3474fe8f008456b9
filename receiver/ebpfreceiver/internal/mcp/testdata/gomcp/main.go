// Command gomcp is the receiver's MCP test program on the Go SDK
// (github.com/modelcontextprotocol/go-sdk, pinned in go.mod):
//
//	gomcp server                 an MCP server over stdio with the tools read_file and fetch
//	gomcp serve-http ADDR        the same server over streamable HTTP (plain), until killed
//	gomcp client-stdio FILE URL  spawns "gomcp server" and calls read_file(FILE), fetch(URL), read_file(/missing)
//	gomcp client-http BASE FILE  the same calls against the server at BASE over streamable HTTP
//
// The clients print one line per call: "call <tool> ok|error".
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
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
	s := mcp.NewServer(&mcp.Implementation{Name: "agenttrail-go-server", Version: "v0.1.0"}, nil)
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
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gomcp server | serve-http ADDR | client-stdio FILE URL | client-http BASE FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server().Run(context.Background(), &mcp.StdioTransport{})
	case "serve-http":
		var ln net.Listener
		if ln, err = net.Listen("tcp", os.Args[2]); err == nil {
			fmt.Println("listening", ln.Addr())
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server() }, nil)
			err = http.Serve(ln, h)
		}
	case "client-stdio":
		self, _ := os.Executable()
		err = calls(ctx, &mcp.CommandTransport{Command: exec.Command(self, "server")}, os.Args[2], os.Args[3])
	case "client-http":
		err = calls(ctx, &mcp.StreamableClientTransport{Endpoint: os.Args[2], DisableStandaloneSSE: true}, os.Args[3], "")
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gomcp:", err)
		os.Exit(1)
	}
}
