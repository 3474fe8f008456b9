package ebpfreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/sockets"
	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/tracers/syscalls"
)

const typeStr = "ebpf"

var componentType = component.MustNewType(typeStr)

// NewFactory returns the factory of the ebpf receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(componentType, createDefaultConfig,
		receiver.WithTraces(createTraces, component.StabilityLevelAlpha))
}

func createDefaultConfig() component.Config {
	return &Config{
		Syscalls:       []string{"connect", "accept", "execve", "openat"},
		SyscallAttach:  probes.AttachAuto,
		CallStacks:     true,
		RingBufferSize: 8 << 20,
		FlushInterval:  200 * time.Millisecond,
		MaxOpenSpans:   100000,
		ProcRoot:       "/proc",
		Python: PythonConfig{
			Enabled:         true,
			Audit:           true,
			AuditEvents:     defaultAuditEvents(),
			SpanIdleTimeout: 30 * time.Second,
		},
		TLS: TLSConfig{
			Enabled:             true,
			Libraries:           []string{"libssl.so.3"},
			Go:                  true,
			CaptureBytes:        16384,
			MaxConnectionBuffer: 1 << 20,
			MaxTotalBuffer:      64 << 20,
		},
		Sockets:         sockets.DefaultConfig(),
		ContentSampling: syscalls.DefaultContentConfig(),
		Discover:        defaultDiscoverConfig(),
	}
}

func createTraces(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
	return newReceiver(set, cfg.(*Config), next), nil
}

// defaultAuditEvents are the CPython audit events that say what a program does to the outside:
// network, processes, files it changes, code it loads. Reads of files are left to the openat
// syscall (an import alone opens dozens).
func defaultAuditEvents() []string {
	return []string{
		"socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
		"urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect", "smtplib.send",
		"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile", "os.kill",
		"os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown", "os.truncate",
		"shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.unpack_archive",
		"ctypes.dlopen", "webbrowser.open", "pty.spawn",
	}
}
