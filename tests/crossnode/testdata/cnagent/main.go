// Command cnagent is the crossnode test's agent: it calls a tool service over HTTP, count times,
// one connection per call, from its configured tool function.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// callTool is the agent's tool (configured with role tool): one HTTP call on a new connection.
//
//go:noinline
func callTool(url, agent string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, url+"?agent="+agent, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Agent", agent)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(b), err
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: cnagent URL AGENT COUNT INTERVAL")
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Args[3])
	every, _ := time.ParseDuration(os.Args[4])
	// The collector sets a process up a moment after its exec (its uprobes): the first call
	// waits for that.
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < n; i++ {
		out, err := callTool(os.Args[1], os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "call:", err)
			os.Exit(1)
		}
		fmt.Println(out)
		time.Sleep(every)
	}
}
