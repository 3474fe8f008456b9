package rules

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// Thresholds of dns_tunneling, tuned on the fixtures of dns_tunneling_test.go (and said in the
// README): data carried in DNS queries (base32, hex, base64url) makes labels that are long and
// dense, while the long labels of real services are words joined by hyphens or short hashes.
const (
	// dnsMinLabel is the length from which a subdomain label can carry data.
	dnsMinLabel = 20
	// dnsHighEntropy (bits per character, Shannon) makes a long label random-looking at once
	// (base64url of anything but repetitive data).
	dnsHighEntropy = 4.2
	// A label of words joined by at least dnsMaxHyphens hyphens is a name.
	dnsMaxHyphens = 2
	// Otherwise: all hex, or at least dnsMinDigits digits and fewer than dnsMaxVowels of its
	// letters vowels (English names have about 38 %, base32 about 20 %).
	dnsMinDigits = 2
	dnsMaxVowels = 0.3
	// dnsMinNames distinct random-looking names under one domain in one story fire the rule.
	dnsMinNames = 5
)

// dnsTunnelingDef is the definition of dns_tunneling.
var dnsTunnelingDef = &Def{ID: story.RuleDNSTunneling, Title: "Data hidden in DNS queries (DNS tunnelling)", severity: story.SevHigh,
	Atlas:       []string{"AML.T0025", "T1048"},
	Explanation: "The request sent many DNS queries with long random-looking labels under one domain: data encoded into query names reaches whoever runs that domain's name server, past every HTTP egress control (exfiltration over an alternative protocol)."}

// dnsTunneling is the built-in rule dns_tunneling (the README's Rules table says when it fires).
type dnsTunneling struct{}

func (dnsTunneling) Def() *Def { return dnsTunnelingDef }

func (dnsTunneling) Evaluate(c *Context) *Hit {
	r := dnsTunnelingDef
	type domainNames struct {
		names []string
		first *story.EgressCall
	}
	byDomain := map[string]*domainNames{}
	var order []string
	for i := range c.Facts.Egress {
		e := &c.Facts.Egress[i]
		for _, name := range e.DNS {
			domain, random := dnsRandomName(name)
			if !random {
				continue
			}
			d := byDomain[domain]
			if d == nil {
				d = &domainNames{first: e}
				byDomain[domain] = d
				order = append(order, domain)
			}
			if !slices.Contains(d.names, name) {
				d.names = append(d.names, name)
			}
		}
	}
	h := &Hit{Rule: r}
	for _, domain := range order {
		d := byDomain[domain]
		if len(d.names) < dnsMinNames {
			continue
		}
		h.add(Evidence{Text: fmt.Sprintf("%d query names with long random-looking labels under %s sent to %s (e.g. %s)",
			len(d.names), domain, d.first.Endpoint(), story.ShortenTo(d.names[0], 80)),
			severity: story.SevHigh, Span: d.first.Span, Event: -1, Egress: d.first})
	}
	return nonEmpty(h)
}

// dnsRandomName splits a query name into its domain (the registrable part, approximated: the
// last two labels, three under a two-letter country code with a short second level such as
// co.uk) and reports whether a label below it looks like encoded data.
func dnsRandomName(name string) (domain string, random bool) {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(name), "."), ".")
	n := 2
	if len(labels) >= 3 && len(labels[len(labels)-1]) == 2 && len(labels[len(labels)-2]) <= 3 {
		n = 3
	}
	if len(labels) <= n {
		return name, false
	}
	domain = strings.Join(labels[len(labels)-n:], ".")
	for _, l := range labels[:len(labels)-n] {
		if dnsRandomLabel(l) {
			return domain, true
		}
	}
	return domain, false
}

// dnsRandomLabel: a label long enough to carry data that reads like an encoding of it: very
// dense (base64url), all hex, or few vowels among its letters with digits between them (base32,
// and encodings of other alphabets). Labels of words joined by hyphens are names, not data.
func dnsRandomLabel(l string) bool {
	if len(l) < dnsMinLabel {
		return false
	}
	var counts [256]int
	digits, vowels, letters, hyphens := 0, 0, 0, 0
	hexOnly := true
	for i := 0; i < len(l); i++ {
		b := l[i]
		counts[b]++
		switch {
		case b >= '0' && b <= '9':
			digits++
		case b >= 'a' && b <= 'z':
			letters++
			if strings.IndexByte("aeiou", b) >= 0 {
				vowels++
			}
			if b > 'f' {
				hexOnly = false
			}
		case b == '-':
			hyphens++
			hexOnly = false
		default:
			hexOnly = false
		}
	}
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(l))
			h -= p * math.Log2(p)
		}
	}
	switch {
	case h >= dnsHighEntropy:
		return true
	case hyphens >= dnsMaxHyphens:
		return false
	case hexOnly && digits > 0:
		return true
	}
	return digits >= dnsMinDigits && letters > 0 && float64(vowels)/float64(letters) < dnsMaxVowels
}
