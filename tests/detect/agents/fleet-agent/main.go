// Command fleet-agent is the Go agent of the detection corpus (tests/detect): an operations
// assistant for a vehicle fleet with its own tools. It asks a model (plain HTTP, JSON) what to
// do with a message and runs the tools the model picks until the model answers.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	modelURL := flag.String("model-url", "", "model endpoint (plain HTTP)")
	resolver := flag.String("resolver", "127.0.0.1:53", "DNS server the host lookups go to")
	ready := flag.String("ready", "", "file the listen address is written to once serving")
	flag.Parse()
	client := &http.Client{Timeout: 20 * time.Second} // keep-alive: connections are reused
	a := &Agent{model: &Model{url: *modelURL, client: client}, tools: &Tools{client: client, resolver: *resolver}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/chat", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Message string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"reply": a.HandlePrompt(req.Message)})
	})
	log.Fatal(http.Serve(ln, mux))
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// decision is what the model asked for: a tool call, or the answer (Content).
type decision struct {
	Content string
	Tool    string
	Args    map[string]string
}

// completion is the part of an OpenAI chat-completions answer the agent reads.
type completion struct {
	Choices []struct {
		Message struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
	} `json:"choices"`
}

// Agent runs one conversation turn.
type Agent struct {
	model *Model
	tools *Tools
}

//go:noinline
func (a *Agent) HandlePrompt(prompt string) string {
	msgs := []message{{Role: "user", Content: prompt}}
	for range 6 {
		d := a.model.Complete(msgs)
		if d.Tool == "" {
			return d.Content
		}
		msgs = append(msgs, message{Role: "tool", Content: a.tools.run(d)})
	}
	return "too many steps"
}

// Model is the model's HTTP client.
type Model struct {
	url    string
	client *http.Client
}

//go:noinline
func (m *Model) Complete(msgs []message) decision {
	b, _ := json.Marshal(map[string]any{"model": "fleet-model", "messages": msgs})
	resp, err := m.client.Post(m.url, "application/json", bytes.NewReader(b))
	if err != nil {
		return decision{Content: "model unreachable: " + err.Error()}
	}
	defer resp.Body.Close()
	var c completion
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&c); err != nil || len(c.Choices) == 0 {
		return decision{Content: "bad model answer"}
	}
	msg := c.Choices[0].Message
	if len(msg.ToolCalls) == 0 {
		return decision{Content: msg.Content}
	}
	d := decision{Tool: msg.ToolCalls[0].Function.Name}
	_ = json.Unmarshal([]byte(msg.ToolCalls[0].Function.Arguments), &d.Args)
	return d
}

// Tools are the fleet agent's tools; each is its own function, so each is its own span.
type Tools struct {
	client   *http.Client
	resolver string
}

func (t *Tools) run(d decision) string {
	switch d.Tool {
	case "vehicle-manifest":
		return t.VehicleManifest(d.Args["path"])
	case "dispatch-report":
		return t.DispatchReport(d.Args["url"], d.Args["path"], d.Args["text"])
	case "fleet-diagnostics":
		return t.FleetDiagnostics(d.Args["command"])
	case "depot-lookup":
		return t.DepotLookup(d.Args["names"])
	case "route-briefing":
		return t.RouteBriefing(d.Args["url"])
	}
	return "no such tool: " + d.Tool
}

// VehicleManifest reads a file.
//
//go:noinline
func (t *Tools) VehicleManifest(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// DispatchReport POSTs a file (or text) to a URL, over the agent's keep-alive client.
//
//go:noinline
func (t *Tools) DispatchReport(url, path, text string) string {
	body := []byte(text)
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return err.Error()
		}
		body = b
	}
	resp, err := t.client.Post(url, "text/plain", bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprintf("sent %d bytes: %s", len(body), resp.Status)
}

// FleetDiagnostics runs a command: "sh:..." through the shell, else the program and its
// arguments.
//
//go:noinline
func (t *Tools) FleetDiagnostics(command string) string {
	var cmd *exec.Cmd
	if rest, ok := strings.CutPrefix(command, "sh:"); ok {
		cmd = exec.Command("/bin/sh", "-c", rest)
	} else {
		f := strings.Fields(command)
		if len(f) == 0 {
			return "no command"
		}
		cmd = exec.Command(f[0], f[1:]...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return err.Error() + ": " + string(out)
	}
	return string(out)
}

// DepotLookup sends one DNS query (type A) per comma-separated name to the resolver, over one
// unconnected UDP socket, without waiting for answers.
//
//go:noinline
func (t *Tools) DepotLookup(names string) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err.Error()
	}
	defer pc.Close()
	to, err := net.ResolveUDPAddr("udp", t.resolver)
	if err != nil {
		return err.Error()
	}
	n := 0
	for i, name := range strings.Split(names, ",") {
		if _, err := pc.WriteTo(dnsQuery(uint16(i+1), strings.TrimSpace(name)), to); err == nil {
			n++
		}
	}
	return fmt.Sprintf("%d queries sent", n)
}

func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(strings.Trim(name, "."), ".") {
		if len(l) > 63 {
			l = l[:63]
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1) // root, type A, class IN
}

// RouteBriefing fetches a document.
//
//go:noinline
func (t *Tools) RouteBriefing(url string) string {
	resp, err := t.client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}
