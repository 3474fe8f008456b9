package main

// The bank demo (tests/workloads/bank) for sections 3, 4 and 6: the Go customer-agent, the mock
// model over HTTPS and the exfil sink, all on loopback with free ports, started once.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agenttrail/agenttrail/tests/workloads/bank"
)

type bankRig struct {
	env    *bank.Env
	client *http.Client
	seq    atomic.Int64
}

// benignMessages are the load's messages: the first two of the bank's benign conversation (a
// balance summary and recent transactions). The third, a transfer, changes balances and
// lengthens every later transaction listing, so requests would not stay alike.
var benignMessages = bank.BenignConversation[:2]

// rig builds and starts the bank demo the first time it is needed.
func (b *bench) rig() (*bankRig, error) {
	if b.bank != nil {
		return b.bank, nil
	}
	ctx, cancel := timeout(5 * time.Minute)
	defer cancel()
	bins, err := bank.Build(ctx, b.path("bank-bin"))
	if err != nil {
		return nil, err
	}
	// The agent runs under another file name (comm "bench-agent"): the distribution's config
	// selects process_name customer-agent, and a collector of someone else's test on this
	// machine would otherwise trace the benchmark's agent too. The harness's own collector and
	// receiver select it by pid.
	renamed := b.path("bank-bin/bench-agent")
	if err := os.Rename(bins.Agent, renamed); err != nil {
		return nil, err
	}
	bins.Agent = renamed
	env, err := bank.Start(ctx, bins, bank.Options{Dir: b.path("bank"),
		AgentAddr: "127.0.0.1:0", ModelAddr: "127.0.0.1:0", SinkAddr: "127.0.0.2:0"})
	if err != nil {
		return nil, err
	}
	// Env.Chat's client keeps two idle connections; the saturation phase's clients each keep
	// their own, so that no request pays for a new connection.
	b.bank = &bankRig{env: env, client: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: 64, MaxIdleConnsPerHost: 64}}}
	return b.bank, nil
}

func (r *bankRig) stop() { _ = r.env.Stop() }

// chat is Env.Chat (the same request to the agent's /chat) on the rig's keep-alive client, in a
// session of its own so that no request carries another's history.
func (r *bankRig) chat(ctx context.Context, message string) (bank.Reply, error) {
	session := "bench-" + strconv.FormatInt(r.seq.Add(1), 10)
	body, _ := json.Marshal(map[string]string{"session": session, "message": message})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.env.AgentURL+"/chat", bytes.NewReader(body))
	if err != nil {
		return bank.Reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return bank.Reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return bank.Reply{}, err
	}
	var rep bank.Reply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return rep, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || rep.Error != "" {
		return rep, fmt.Errorf("HTTP %d: %s", resp.StatusCode, rep.Error)
	}
	return rep, nil
}

// benign sends the i-th benign message and checks that the agent ran a tool for it.
func (r *bankRig) benign(ctx context.Context, i int) error {
	rep, err := r.chat(ctx, benignMessages[i%len(benignMessages)])
	if err == nil && len(rep.ToolCalls) == 0 {
		err = fmt.Errorf("the agent ran no tool for %q", benignMessages[i%len(benignMessages)])
	}
	return err
}

// cpuTime is a process's user + system CPU time from /proc/<pid>/stat (every thread, exited
// ones included).
func cpuTime(pid int) time.Duration {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			return time.Duration(u+k) * time.Second / 100 // USER_HZ
		}
	}
	return 0
}

func memKB(pid int, field string) int { return memKBFile(fmt.Sprintf("/proc/%d/status", pid), field) }

func memKBFile(path, field string) int {
	data, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
