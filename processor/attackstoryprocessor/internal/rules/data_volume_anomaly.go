package rules

import (
	"fmt"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// dataVolumeDef is the definition of data_volume_anomaly.
var dataVolumeDef = &Def{ID: story.RuleDataVolumeAnomaly, Title: "Data volume far above the profile", severity: story.SevMedium,
	Atlas:       []string{"AML.T0025"},
	Explanation: "The request sent far more data, or opened far more connections, than the workload usually does."}

// dataVolume is the built-in rule data_volume_anomaly (the README's Rules table says when it fires).
type dataVolume struct{}

func (dataVolume) Def() *Def { return dataVolumeDef }

func (dataVolume) Evaluate(c *Context) *Hit {
	r := dataVolumeDef
	h := &Hit{Rule: r}
	f := c.Facts
	factor := c.VolumeFactor
	if c.Policy.MaxBytes > 0 && f.BytesSent > c.Policy.MaxBytes {
		h.add(Evidence{Text: fmt.Sprintf("%s sent in one request, above max_egress_bytes (%s)", story.FormatBytes(f.BytesSent), story.FormatBytes(c.Policy.MaxBytes)), severity: story.SevMedium, Span: f.Head, Event: -1})
	}
	if c.Policy.MaxConnects > 0 && f.Connects > c.Policy.MaxConnects {
		h.add(Evidence{Text: fmt.Sprintf("%d connects in one request, above max_connects (%d)", f.Connects, c.Policy.MaxConnects), severity: story.SevMedium, Span: f.Head, Event: -1})
	}
	if c.profileComplete() {
		c.Profile.RefreshVolume()
		v := c.Profile.Data.DataVolume
		if len(v.ConnectsSamples) > 0 || v.ConnectsMax > 0 {
			limit := factor * float64(max(v.ConnectsP95, 1))
			if float64(f.Connects) > limit {
				h.add(Evidence{Text: fmt.Sprintf("%d connects in one request; the learned p95 is %d (limit %.0f)", f.Connects, v.ConnectsP95, limit), severity: story.SevMedium, Span: f.Head, Event: -1})
			}
		}
		// Per destination: a destination of the profile that the story sent far more to than
		// any story did while the profile was learned (at least flowVolumeFloor: a few
		// kilobytes more to a destination that got almost nothing are not news).
		seen := map[string]bool{}
		for i := range f.Egress {
			e := &f.Egress[i]
			if seen[e.Dest] {
				continue
			}
			seen[e.Dest] = true
			n := f.BytesTo(*e)
			learned, ok := c.Profile.DestVolume(*e)
			if !ok || n <= 0 {
				continue
			}
			if limit := factor * float64(max(learned, destVolumeFloor)); float64(n) > limit {
				h.add(Evidence{Text: fmt.Sprintf("%s sent to %s in one request; the most learned for it is %s (limit %s)", story.FormatBytes(n), e.Endpoint(), story.FormatBytes(learned), story.FormatBytes(int64(limit))),
					severity: story.SevMedium, Span: e.Span, Event: -1, Egress: e})
			}
		}
		if v.BytesSentP95 > 0 && f.HasBytes {
			limit := factor * float64(v.BytesSentP95)
			if float64(f.BytesSent) > limit {
				h.add(Evidence{Text: fmt.Sprintf("%s sent in one request; the learned p95 is %s (limit %s)", story.FormatBytes(f.BytesSent), story.FormatBytes(v.BytesSentP95), story.FormatBytes(int64(limit))), severity: story.SevMedium, Span: f.Head, Event: -1})
			}
		}
	}
	return nonEmpty(h)
}

// destVolumeFloor is the least learned volume of a destination a story is judged against.
const destVolumeFloor = 1000
