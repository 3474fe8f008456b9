package archive

import (
	"fmt"
	"time"
)

const day = 24 * time.Hour

// Retention policies known by name. A year is 365 days for pci_dss, as PCI DSS 10.5.1 states
// it ("at least 12 months"); the multi-year policies add the most leap days their span can hold
// (2 for both 5 and 7 years) so that they are never shorter than the calendar years the
// regulation names.
var frameworkRetention = []struct {
	name string
	d    time.Duration
}{
	{"pci_dss", 365 * day},
	{"nydfs_500", (5*365 + 2) * day},
	{"sox", (7*365 + 2) * day},
}

// Retention says how long closed segments are kept. The zero value keeps them forever.
type Retention struct {
	// Name is the framework name or, for a custom duration, the duration as configured.
	Name     string
	Duration time.Duration
}

// Forever reports whether nothing is ever removed.
func (r Retention) Forever() bool { return r.Duration <= 0 }

// String returns the configured name.
func (r Retention) String() string {
	if r.Forever() {
		return "forever"
	}
	return r.Name
}

// ParseRetention accepts "" (keep forever), a framework name (pci_dss, nydfs_500, sox) or a
// positive Go duration such as "720h".
func ParseRetention(s string) (Retention, error) {
	if s == "" {
		return Retention{}, nil
	}
	for _, f := range frameworkRetention {
		if s == f.name {
			return Retention{Name: f.name, Duration: f.d}, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Retention{}, fmt.Errorf("want pci_dss, nydfs_500, sox or a positive duration such as 720h, got %q", s)
	}
	return Retention{Name: s, Duration: d}, nil
}
