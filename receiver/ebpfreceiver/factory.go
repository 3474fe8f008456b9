package ebpfreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
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
		CallStacks:     true,
		RingBufferSize: 8 << 20,
		FlushInterval:  200 * time.Millisecond,
		MaxOpenSpans:   100000,
		ProcRoot:       "/proc",
	}
}

func createTraces(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
	return newReceiver(set, cfg.(*Config), next), nil
}
