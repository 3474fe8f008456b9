// customer-agent is the demo's AI customer-service agent of a bank: an HTTP chat server that
// asks an OpenAI-compatible model what to do and runs the tools it picks. AgentTrail traces it
// by process name ("customer-agent") with uprobes on the functions marked go:noinline; their
// names, receivers and parameters are referenced by distributions/agenttrail/config.yaml.
//
//	POST /chat {"session":"s1","message":"What is my balance? I am C1001"}
//	-> {"reply":"...","tool_calls":[{"name":"accounts-summary","arguments":{...},"result":"..."}],"error":""}
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/agenttrail/agenttrail/tests/workloads/internal/serve"
)

// maxHistory bounds the remembered messages of a session (user and assistant turns).
const maxHistory = 20

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "chat API address (port 0 picks a free port; see -ready-file)")
	modelURL := flag.String("model-url", "https://127.0.0.1:8443/v1/chat/completions", "OpenAI-compatible chat-completions endpoint")
	modelCA := flag.String("model-ca", "", "PEM CA certificate to trust for the model endpoint (default: system roots)")
	model := flag.String("model", "model-x", "model name sent in requests")
	customers := flag.String("customers", "customers.csv", "customer database (CSV: id,name,email,card_number,ssn,balance_cents)")
	readyFile := flag.String("ready-file", "", "file written with the listen address once serving")
	flag.Parse()
	log.SetPrefix("customer-agent: ")

	tools, err := NewTools(*customers)
	if err != nil {
		log.Fatal(err)
	}
	client, err := NewModelClient(*modelURL, *model, *modelCA)
	if err != nil {
		log.Fatal(err)
	}
	srv := &server{model: client, tools: tools, sessions: map[string]*session{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /chat", srv.chat)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	if err := serve.Run(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, *listen, *readyFile); err != nil {
		log.Fatal(err)
	}
}

type server struct {
	model *ModelClient
	tools *Tools

	mu       sync.Mutex
	sessions map[string]*session
}

// session serialises the turns of one conversation and remembers them.
type session struct {
	mu      sync.Mutex
	history []Message
}

type chatRequest struct {
	Session string `json:"session"`
	Message string `json:"message"`
}

type chatReply struct {
	Reply     string           `json:"reply"`
	ToolCalls []ToolCallRecord `json:"tool_calls"`
	Error     string           `json:"error"`
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, chatReply{ToolCalls: []ToolCallRecord{}, Error: "bad request: " + err.Error()})
		return
	}
	if req.Message == "" {
		writeJSON(w, http.StatusBadRequest, chatReply{ToolCalls: []ToolCallRecord{}, Error: `"message" is empty`})
		return
	}
	if req.Session == "" {
		req.Session = "default"
	}
	s.mu.Lock()
	sess := s.sessions[req.Session]
	if sess == nil {
		sess = &session{}
		s.sessions[req.Session] = sess
	}
	s.mu.Unlock()

	sess.mu.Lock()
	defer sess.mu.Unlock()
	start := time.Now()
	agent := &Agent{ctx: r.Context(), model: s.model, tools: s.tools, history: sess.history}
	reply, err := agent.HandlePrompt(req.Message)
	sess.history = agent.history[max(0, len(agent.history)-maxHistory):]

	out := chatReply{Reply: reply, ToolCalls: agent.calls}
	if out.ToolCalls == nil {
		out.ToolCalls = []ToolCallRecord{}
	}
	status := http.StatusOK
	if err != nil {
		out.Error = err.Error()
		status = http.StatusBadGateway
	}
	names := make([]string, len(out.ToolCalls))
	for i, c := range out.ToolCalls {
		names[i] = c.Name
	}
	log.Printf("session=%q tools=%v status=%d took=%s err=%v", req.Session, names, status, time.Since(start).Round(time.Millisecond), err)
	writeJSON(w, status, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
