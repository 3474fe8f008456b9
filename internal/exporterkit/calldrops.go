package exporterkit

import (
	"context"
	"sort"

	"go.uber.org/zap"
)

// CallDrops tallies the items one export call drops by reason (an item too large, a body
// that cannot be encoded), with the size of the largest: what Drops.Report counts and logs at
// the end of the call. The zero value is ready to use.
type CallDrops struct {
	byReason map[string]*callDrop
}

type callDrop struct {
	count   int
	largest int
}

// Note records one item of size bytes dropped for reason.
func (c *CallDrops) Note(reason string, size int) {
	if c.byReason == nil {
		c.byReason = map[string]*callDrop{}
	}
	cd := c.byReason[reason]
	if cd == nil {
		cd = &callDrop{}
		c.byReason[reason] = cd
	}
	cd.count++
	cd.largest = max(cd.largest, size)
}

// Report adds the call's drops to the exporter's counter and writes one error line per reason,
// sorted by reason: msg with the reason, the signal, the fields of base, countKey (e.g.
// "dropped_rows") with the count, and the fields detail returns for the reason and the largest
// item's size. Nothing is written when nothing was dropped.
func (d *Drops) Report(ctx context.Context, c *CallDrops, msg, countKey string, base []zap.Field,
	detail func(reason string, largest int) []zap.Field,
) {
	if len(c.byReason) == 0 {
		return
	}
	reasons := make([]string, 0, len(c.byReason))
	for r := range c.byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		cd := c.byReason[reason]
		d.Add(ctx, reason, int64(cd.count))
		fields := make([]zap.Field, 0, 4+len(base))
		fields = append(fields, zap.String("reason", reason), zap.String("signal", d.signal))
		fields = append(fields, base...)
		fields = append(fields, zap.Int(countKey, cd.count))
		if detail != nil {
			fields = append(fields, detail(reason, cd.largest)...)
		}
		d.logger.Error(msg, fields...)
	}
}
