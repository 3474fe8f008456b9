package rules

import (
	"fmt"
	"strings"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// egressOutsideProfileDef is the definition of egress_outside_profile.
var egressOutsideProfileDef = &Def{ID: story.RuleEgressOutsideProfile, Title: "Connection to a destination outside the profile or allowed destinations", severity: story.SevMedium,
	Atlas:       []string{"AML.T0025"},
	Explanation: "The agent connected to a destination it is not allowed to or never reached while its profile was learned."}

// egressOutsideProfile is the built-in rule egress_outside_profile (the README's Rules table says when it fires).
type egressOutsideProfile struct{}

func (egressOutsideProfile) Def() *Def { return egressOutsideProfileDef }

func (egressOutsideProfile) Evaluate(c *Context) *Hit {
	r := egressOutsideProfileDef
	h := &Hit{Rule: r}
	seen := map[string]bool{}
	for i := range c.Facts.Egress {
		e := &c.Facts.Egress[i]
		key := e.Endpoint()
		if seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case c.Policy.AllowedDests != nil && !c.Policy.DestinationAllowed(*e):
			h.add(Evidence{Text: fmt.Sprintf("%s %s is outside allowed_destinations (%s)", e.Kind, e.Endpoint(), strings.Join(c.Policy.AllowedRaw, ", ")),
				boundary: true, severity: story.SevHigh, Span: e.Span, Event: -1, Egress: e})
		case c.Policy.AllowedDests == nil && c.profileComplete() && !c.Profile.KnowsDestination(*e):
			h.add(Evidence{Text: fmt.Sprintf("%s %s was never seen while the profile was learned", e.Kind, e.Endpoint()),
				severity: story.SevMedium, Span: e.Span, Event: -1, Egress: e})
		}
	}
	return nonEmpty(h)
}
