// gotls asks an OpenAI-compatible model over HTTPS with net/http, the way Go agents do; the
// receiver's kernel tests read the exchange from crypto/tls. Commands on stdin, one per line:
//
//	ask TEXT  -> "ok ask <finish reason> <protocol>"
//	bench N   -> "ok bench SECONDS" (N calls, for overhead measurements)
//
// Usage: gotls MODEL_URL CA_FILE MODEL [h2]
//
// With h2 the transport negotiates HTTP/2, as net/http's default transport (and the official
// OpenAI and Anthropic Go SDKs with it) does.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

type client struct {
	url, model string
	http       *http.Client
	proto      string // of the last answer: HTTP/1.1 or HTTP/2.0
}

//go:noinline
func (c *client) Ask(prompt string) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"model":    c.model,
		"messages": []map[string]string{{"role": "user", "content": prompt}},
		"tools":    []map[string]any{{"type": "function", "function": map[string]string{"name": "customer-data-export"}}},
	})
	resp, err := c.http.Post(c.url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	c.proto = resp.Proto
	var out struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Choices) == 0 {
		return "", fmt.Errorf("bad answer: %v", err)
	}
	return out.Choices[0].FinishReason, nil
}

func main() {
	pem, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	// A TLSClientConfig of its own: the transport speaks HTTP/1.1, unless told to try HTTP/2.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}
	if len(os.Args) > 4 && os.Args[4] == "h2" {
		tr.ForceAttemptHTTP2 = true
	}
	c := &client{url: os.Args[1], model: os.Args[3], http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		if cmd == "bench" {
			var n int
			fmt.Sscan(arg, &n)
			start := time.Now()
			for i := 0; i < n; i++ {
				if _, err := c.Ask("hello"); err != nil {
					fmt.Println("error", err)
					break
				}
			}
			fmt.Printf("ok bench %.6f\n", time.Since(start).Seconds())
			continue
		}
		if cmd == "ask" {
			reason, err := c.Ask(arg)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			fmt.Println("ok ask", reason, c.proto)
		}
	}
}
