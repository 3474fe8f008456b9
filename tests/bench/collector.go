package main

// The built collector (_build/otelcol-agenttrail) as tests/e2e runs it: the distribution's
// agent configuration plus overrides, AGENTTRAIL_* variables for the node-specific values, and
// here an OTLP/HTTP exporter to the harness's own OTLP receiver in place of otlp_grpc to the
// gateway, and the collector's own metrics on a free port.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type collectorProc struct {
	cmd         *exec.Cmd
	log         string
	done        chan struct{}
	metricsPort int
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// collectorCommand says how the collector of sections 4 and 6 is run, for BENCHMARKS.md.
func collectorCommand(variant string) string {
	s := "otelcol-agenttrail --config=" + distConfig + " + overrides (exporters otlp_grpc → otlp_http to the harness; metrics on a free port; targets pinned to the agent's pid instead of process_name, as other customer-agents may run on the machine)"
	if variant != "" {
		s += " + " + variant
	}
	return s
}

// startCollector runs the collector with the distribution's configuration, the harness's
// overrides (its targets pinned to the bank agent's pid) and extra (YAML, may be empty), and
// waits until its ebpf receiver has started.
func (b *bench) startCollector(tag string, sink *otlpSink, agentPID int, extra string) (*collectorProc, error) {
	if _, err := os.Stat(b.opt.collector); err != nil {
		return nil, fmt.Errorf("%s is not built (make build)", b.opt.collector)
	}
	health, err := freePort()
	if err != nil {
		return nil, err
	}
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	override := fmt.Sprintf(`exporters:
  otlp_http/bench:
    endpoint: http://%s
    # The distribution's storyroute and otlp_grpc send snappy over gRPC, whose codec is the
    # framed format written in 64 KiB chunks; confighttp's "snappy" is one block of the whole
    # body, buffered first (growing that buffer cost more than the encoding in a profile).
    compression: x-snappy-framed
    retry_on_failure: {initial_interval: 100ms, max_interval: 1s}
service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
  pipelines:
    traces:
      exporters: [otlp_http/bench, debug, findings]
    logs/findings:
      exporters: [otlp_http/bench, debug]
`, sink.addr(), metrics)
	pinned, err := pinnedTargetsYAML(agentPID)
	if err != nil {
		return nil, err
	}
	override += pinned
	files := []string{distConfig, b.path("collector-" + tag + ".yaml")}
	if err := os.WriteFile(files[1], []byte(override), 0o644); err != nil {
		return nil, err
	}
	if extra != "" {
		files = append(files, b.path("collector-"+tag+"-variant.yaml"))
		if err := os.WriteFile(files[2], []byte(extra), 0o644); err != nil {
			return nil, err
		}
	}
	var args []string
	for _, f := range files {
		args = append(args, "--config="+f)
	}
	c := &collectorProc{log: b.path("collector-" + tag + ".log"), done: make(chan struct{}), metricsPort: metrics}
	logFile, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	c.cmd = exec.Command(b.opt.collector, args...)
	c.cmd.Env = append(os.Environ(),
		"AGENTTRAIL_OTLP_ENDPOINT=127.0.0.1:4317", // in no pipeline here
		fmt.Sprintf("AGENTTRAIL_HEALTH_ENDPOINT=127.0.0.1:%d", health),
		"AGENTTRAIL_K8S_AUTH=none",
		"AGENTTRAIL_PROFILES_DIR="+b.path("profiles-"+tag),
	)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(40 * time.Second)
	for {
		select {
		case <-c.done:
			return nil, fmt.Errorf("the collector exited at start: %s", tail(c.log, 5))
		default:
		}
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", health)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(tail(c.log, 400), "ebpf receiver started") {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("the collector did not become ready: %s", tail(c.log, 5))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *collectorProc) pid() int { return c.cmd.Process.Pid }

func (c *collectorProc) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// metric sums the collector's own metrics whose name contains substr.
func (c *collectorProc) metric(substr string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.metricsPort))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if !strings.Contains(name, substr) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
