package k8sattributionprocessor

import (
	"fmt"

	"go.opentelemetry.io/collector/component"

	"github.com/agenttrail/agenttrail/internal/k8sinventory"
)

// informerProvider is what the k8s_inventory extension offers (extension/k8sinventoryextension).
type informerProvider interface {
	Informers() *k8sinventory.Informers
	// HasAPI is false for an extension configured with auth_type none.
	HasAPI() bool
}

// sharedInformers finds the informers of the extension id among host's extensions, which the
// collector starts before any pipeline. nil, nil: the extension has no API (auth_type none).
func sharedInformers(host component.Host, id component.ID) (*k8sinventory.Informers, error) {
	if host == nil {
		return nil, fmt.Errorf("inventory %s: no host to find the extension in", id)
	}
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("inventory %s: no such extension (add it under service::extensions)", id)
	}
	p, ok := ext.(informerProvider)
	if !ok {
		return nil, fmt.Errorf("inventory %s: the extension is not a k8s_inventory extension", id)
	}
	if !p.HasAPI() {
		return nil, nil
	}
	inf := p.Informers()
	if inf == nil {
		return nil, fmt.Errorf("inventory %s: the extension has no informers (it is not started)", id)
	}
	return inf, nil
}

// firstHost is the host of the first instance started (the traces and logs processors of one
// configuration share a core, and a collector has one host).
func (s *statusReporter) firstHost() component.Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hosts) == 0 {
		return nil
	}
	return s.hosts[0]
}
