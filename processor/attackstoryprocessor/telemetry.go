package attackstoryprocessor

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// bgctx is the context of self-telemetry measurements.
var bgctx = context.Background()

// telemetry is the processor's self-telemetry (see metadata.yaml).
type telemetry struct {
	stories        metric.Int64Counter
	evictions      metric.Int64Counter
	findings       metric.Int64Counter
	duplicates     metric.Int64Counter
	stitchedRoots  metric.Int64Counter
	ambiguousRoots metric.Int64Counter
	unscanned      metric.Int64Counter
	unlearned      metric.Int64Counter
	forgotten      metric.Int64Counter

	decisions         metric.Int64Counter
	unmatched         metric.Int64Counter
	attachedWorkloads metric.Int64Gauge

	mu    sync.Mutex
	attrs map[string]metric.MeasurementOption // "key=value" -> option, so hot paths do not allocate
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(ScopeName)
	t := &telemetry{attrs: map[string]metric.MeasurementOption{}}
	var err error
	if t.stories, err = m.Int64Counter("agenttrail.attackstory.stories",
		metric.WithDescription("Stories emitted, by outcome (complete or incomplete)."), metric.WithUnit("{story}")); err != nil {
		return nil, err
	}
	if t.evictions, err = m.Int64Counter("agenttrail.attackstory.evictions",
		metric.WithDescription("Stories emitted early as incomplete, by reason (max_stories, max_spans_per_story, orphan_timeout, shutdown)."), metric.WithUnit("{story}")); err != nil {
		return nil, err
	}
	if t.findings, err = m.Int64Counter("agenttrail.attackstory.findings",
		metric.WithDescription("Findings emitted, by rule (a finding with several rules counts once per rule)."), metric.WithUnit("{finding}")); err != nil {
		return nil, err
	}
	if t.duplicates, err = m.Int64Counter("agenttrail.attackstory.duplicates",
		metric.WithDescription("Spans dropped because a span with the same id was already in the story."), metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if t.stitchedRoots, err = m.Int64Counter("agenttrail.attackstory.stitched",
		metric.WithDescription("Root spans of other traces moved into a story of the same process."), metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if t.ambiguousRoots, err = m.Int64Counter("agenttrail.attackstory.ambiguous",
		metric.WithDescription("Root spans left alone because more than one story of their process could hold them."), metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if t.unscanned, err = m.Int64Counter("agenttrail.attackstory.unscanned_texts",
		metric.WithDescription("Texts of a story (tool arguments and results, model inputs) not scanned for injection markers, by reason (max_texts, max_bytes)."), metric.WithUnit("{text}")); err != nil {
		return nil, err
	}
	if t.forgotten, err = m.Int64Counter("agenttrail.attackstory.forgotten",
		metric.WithDescription("Remembered items the processor's bounds made it forget, by reason (inbound_peers: peers that connected to a process, whose replies then count as egress)."), metric.WithUnit("{item}")); err != nil {
		return nil, err
	}
	if t.unlearned, err = m.Int64Counter("agenttrail.attackstory.not_learned",
		metric.WithDescription("Stories emitted that no profile learned from, by reason (no_entry_point, would_block, finding)."), metric.WithUnit("{story}")); err != nil {
		return nil, err
	}
	if t.decisions, err = m.Int64Counter("agenttrail.enforcement.decisions",
		metric.WithDescription("Attempts the kernel refused (connect, sendmsg) or stopped (exec), by kind and workload."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if t.unmatched, err = m.Int64Counter("agenttrail.enforcement.unmatched_decisions",
		metric.WithDescription("Enforcement decisions no story claimed, emitted as stories of their own."), metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	if t.attachedWorkloads, err = m.Int64Gauge("agenttrail.enforcement.attached_workloads",
		metric.WithDescription("Workloads with kernel enforcement programs attached."), metric.WithUnit("{workload}")); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) Decision(kind, workload string) {
	k := "kind=" + kind + "\x00workload=" + workload
	t.mu.Lock()
	opt, ok := t.attrs[k]
	if !ok {
		opt = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", kind), attribute.String("workload", workload)))
		if len(t.attrs) < 10000 {
			t.attrs[k] = opt
		}
	}
	t.mu.Unlock()
	t.decisions.Add(context.Background(), 1, opt)
}

func (t *telemetry) attr(key, value string) metric.MeasurementOption {
	k := key + "=" + value
	t.mu.Lock()
	defer t.mu.Unlock()
	opt, ok := t.attrs[k]
	if !ok {
		opt = metric.WithAttributeSet(attribute.NewSet(attribute.String(key, value)))
		t.attrs[k] = opt
	}
	return opt
}

func (t *telemetry) story(outcome string) {
	t.stories.Add(context.Background(), 1, t.attr("outcome", outcome))
}

func (t *telemetry) Attached(workloads int64) { t.attachedWorkloads.Record(bgctx, workloads) }

func (t *telemetry) UnmatchedDecision() { t.unmatched.Add(bgctx, 1) }

// Dropped counts what a bound made the processor forget.
func (t *telemetry) Dropped(reason string, n int64) {
	t.forgotten.Add(bgctx, n, t.attr("reason", reason))
}

func (t *telemetry) Duplicate() { t.duplicates.Add(bgctx, 1) }

func (t *telemetry) Ambiguous() { t.ambiguousRoots.Add(bgctx, 1) }

func (t *telemetry) Stitched() { t.stitchedRoots.Add(bgctx, 1) }

func (t *telemetry) Eviction(reason string) {
	t.evictions.Add(context.Background(), 1, t.attr("reason", reason))
}

func (t *telemetry) finding(rule string) {
	t.findings.Add(context.Background(), 1, t.attr("rule", rule))
}

// unscannedTexts counts the texts of a story left out of the marker scan, past its bounds.
func (t *telemetry) unscannedTexts(f *story.Facts) {
	if f.InputsPastCount > 0 {
		t.unscanned.Add(context.Background(), int64(f.InputsPastCount), t.attr("reason", "max_texts"))
	}
	if f.InputsPastBytes > 0 {
		t.unscanned.Add(context.Background(), int64(f.InputsPastBytes), t.attr("reason", "max_bytes"))
	}
}

func (t *telemetry) notLearned(reason string) {
	t.unlearned.Add(context.Background(), 1, t.attr("reason", reason))
}
