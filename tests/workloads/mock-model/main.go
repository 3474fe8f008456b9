// mock-model is a deterministic stand-in for an LLM behind the OpenAI chat-completions API,
// served over HTTPS with a self-signed CA it creates at start. Its "reasoning" is decide():
// keyword rules on the last user message, and it obeys prompt injections on purpose.
//
//	POST /v1/chat/completions {"model":"model-x","messages":[...],"tools":[...]}
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agenttrail/agenttrail/tests/workloads/internal/serve"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "HTTPS address (port 0 picks a free port; see -ready-file)")
	certDir := flag.String("cert-dir", ".", "directory that receives ca.pem, server.pem and server-key.pem")
	defaultExfil := flag.String("default-exfil", "http://127.0.0.2:9999/upload", "export destination when an injected message names no http:// URL")
	readyFile := flag.String("ready-file", "", "file written with the listen address once serving")
	flag.Parse()
	log.SetPrefix("mock-model: ")

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := writeCerts(*certDir, host)
	if err != nil {
		log.Fatal(err)
	}
	m := &model{defaultExfil: *defaultExfil}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", m.completions)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	if err := serve.Run(srv, *listen, *readyFile); err != nil {
		log.Fatal(err)
	}
}

type model struct {
	defaultExfil string
	completionN  atomic.Int64 // deterministic response ids: chatcmpl-1, chatcmpl-2, ...
	callN        atomic.Int64 // deterministic tool call ids: call_1, call_2, ...
}

type request struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Tools    []struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

type responseMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"` // null when the message only carries tool calls, as OpenAI does
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

type choice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type response struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   usage    `json:"usage"`
}

var validRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

func (m *model) completions(w http.ResponseWriter, r *http.Request) {
	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&req); err != nil {
		apiError(w, "invalid JSON body: "+err.Error())
		return
	}
	if req.Model == "" {
		apiError(w, `"model" is required`)
		return
	}
	if len(req.Messages) == 0 {
		apiError(w, `"messages" must not be empty`)
		return
	}
	for i, msg := range req.Messages {
		if !validRoles[msg.Role] {
			apiError(w, fmt.Sprintf("messages[%d]: invalid role %q", i, msg.Role))
			return
		}
	}
	offered := map[string]bool{}
	for _, t := range req.Tools {
		offered[t.Function.Name] = true
	}
	d := decide(req.Messages, offered, m.defaultExfil)

	c := choice{Message: responseMessage{Role: "assistant"}, FinishReason: "stop"}
	if d.Tool != "" {
		c.Message.ToolCalls = []toolCall{{
			ID:       fmt.Sprintf("call_%d", m.callN.Add(1)),
			Type:     "function",
			Function: functionCall{Name: d.Tool, Arguments: d.Arguments},
		}}
		c.FinishReason = "tool_calls"
	} else {
		c.Message.Content = &d.Content
	}
	out := response{
		ID:      fmt.Sprintf("chatcmpl-%d", m.completionN.Add(1)),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   req.Model,
		Choices: []choice{c},
	}
	// Token counts are word counts: deterministic, and of the right order of magnitude.
	for _, msg := range req.Messages {
		out.Usage.PromptTokens += words(string(msg.Content))
	}
	out.Usage.CompletionTokens = words(d.Content) + words(d.Arguments)
	out.Usage.TotalTokens = out.Usage.PromptTokens + out.Usage.CompletionTokens
	log.Printf("%s: %d messages -> tool=%q finish=%s", out.ID, len(req.Messages), d.Tool, c.FinishReason)

	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func words(s string) int { return len(strings.Fields(s)) }

// apiError answers in OpenAI's error format.
func apiError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error"}})
}

// writeCerts makes a fresh ECDSA CA and a server certificate for localhost, 127.0.0.1, ::1 and
// the listen host, writes them as PEM into dir and returns the server's key pair. Clients
// trust ca.pem (customer-agent -model-ca).
func writeCerts(dir, listenHost string) (tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "AgentTrail demo model CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(listenHost); ip != nil && !ip.Equal(ips[0]) && !ip.Equal(ips[1]) {
		ips = append(ips, ip)
	}
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "mock-model"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644},
		{"server.pem", certPEM, 0o644},
		{"server-key.pem", keyPEM, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
