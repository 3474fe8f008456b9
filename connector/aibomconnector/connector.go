package aibomconnector

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/connector/aibomconnector/internal/metadata"
	"github.com/agenttrail/agenttrail/internal/aibom"
)

// Names of the log records.
const (
	// EventName is the event.name of the log records.
	EventName            = "agenttrail.aibom"
	attrWorkloadKey      = "agenttrail.workload.key"
	attrSerialNumber     = "agenttrail.aibom.serial_number"
	attrEventName        = "event.name"
	attrContentType      = "agenttrail.aibom.format"
	contentTypeCycloneDX = "application/vnd.cyclonedx+json; version=1.6"
)

type aibomConnector struct {
	cfg    *Config
	next   consumer.Logs
	logger *zap.Logger
	tool   string
	now    func() time.Time

	records metric.Int64Counter
	dropped metric.Int64Counter

	mu       sync.Mutex
	inv      *aibom.Inventory
	pending  map[string]bool      // workloads changed since their last record
	lastSent map[string]time.Time // when each workload's last record went out
	serials  map[string]string    // each workload's last serial number (a change that BOMs identically is no record)
	dropSeen map[string]int       // inventory drops already counted in the metric

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newConnector(set connector.Settings, cfg *Config, next consumer.Logs) (*aibomConnector, error) {
	m := set.MeterProvider.Meter(metadata.ScopeName)
	records, err := m.Int64Counter("agenttrail.aibom.records",
		metric.WithDescription("Log records emitted, one per workload whose AI-BOM changed."), metric.WithUnit("{record}"))
	if err != nil {
		return nil, err
	}
	dropped, err := m.Int64Counter("agenttrail.aibom.dropped",
		metric.WithDescription("Observations the inventory did not keep, by reason."), metric.WithUnit("{observation}"))
	if err != nil {
		return nil, err
	}
	return &aibomConnector{
		cfg: cfg, next: next, logger: set.Logger, tool: set.BuildInfo.Version, now: time.Now,
		records: records, dropped: dropped,
		inv:     aibom.New(aibom.Options{MaxWorkloads: cfg.MaxWorkloads, MaxEntries: cfg.MaxEntries}),
		pending: map[string]bool{}, lastSent: map[string]time.Time{}, serials: map[string]string{}, dropSeen: map[string]int{},
	}, nil
}

func (*aibomConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// Start runs the flush loop: changes held back by min_interval go out when it has passed, even
// if no more spans come.
func (c *aibomConnector) Start(context.Context, component.Host) error {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	tick := min(c.cfg.MinInterval/4, time.Second)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.flush(ctx, false); err != nil {
					c.logger.Warn("aibom: log records not delivered; they are built again at the next change", zap.Error(err))
				}
			}
		}
	}()
	return nil
}

// Shutdown stops the loop and sends what changed since the last records. Idempotent, safe
// without Start.
func (c *aibomConnector) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	c.wg.Wait()
	return c.flush(ctx, true)
}

// ConsumeTraces records what the spans show and sends the records that are due.
func (c *aibomConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	c.mu.Lock()
	for _, k := range c.inv.AddTraces(td, aibom.SourceSpans) {
		c.pending[k] = true
	}
	for reason, n := range c.inv.Dropped {
		if d := n - c.dropSeen[reason]; d > 0 {
			c.dropped.Add(ctx, int64(d), metric.WithAttributes(attribute.String("reason", reason)))
			c.dropSeen[reason] = n
		}
	}
	c.mu.Unlock()
	// A logs pipeline that refuses is no reason to fail the traces: the records are built
	// again (whole, not as a diff) at the next change or tick.
	if err := c.flush(ctx, false); err != nil {
		c.logger.Warn("aibom: log records not delivered; they are sent again later", zap.Error(err))
	}
	return nil
}

// flush sends one record per pending workload whose last record is older than min_interval
// (all of them when final). Records are built under the lock and sent outside it.
func (c *aibomConnector) flush(ctx context.Context, final bool) error {
	c.mu.Lock()
	now := c.now()
	ld := plog.NewLogs()
	var sent []string
	for key := range c.pending {
		if !final && now.Sub(c.lastSent[key]) < c.cfg.MinInterval {
			continue
		}
		delete(c.pending, key)
		w := c.inv.Workload(key)
		if w == nil {
			continue
		}
		bom := aibom.BOM([]*aibom.Workload{w}, aibom.Meta{ToolVersion: c.tool, Time: now, Inventory: true})
		if bom.SerialNumber == c.serials[key] {
			continue // nothing the document says changed
		}
		var body bytes.Buffer
		if err := aibom.Encode(&body, bom); err != nil {
			c.logger.Error("aibom: encoding a BOM failed", zap.String("workload", key), zap.Error(err))
			continue
		}
		c.serials[key] = bom.SerialNumber
		c.lastSent[key] = now
		sent = append(sent, key)
		rl := ld.ResourceLogs().AppendEmpty()
		for k, v := range w.Identity {
			rl.Resource().Attributes().PutStr(k, v)
		}
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName(metadata.ScopeName)
		lr := sl.LogRecords().AppendEmpty()
		ts := pcommon.NewTimestampFromTime(now)
		lr.SetTimestamp(ts)
		lr.SetObservedTimestamp(ts)
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.SetSeverityText("INFO")
		lr.SetEventName(EventName)
		lr.Attributes().PutStr(attrEventName, EventName)
		lr.Attributes().PutStr(attrWorkloadKey, key)
		lr.Attributes().PutStr(attrSerialNumber, bom.SerialNumber)
		lr.Attributes().PutStr(attrContentType, contentTypeCycloneDX)
		lr.Body().SetStr(body.String())
	}
	c.mu.Unlock()
	if len(sent) == 0 {
		return nil
	}
	err := c.next.ConsumeLogs(ctx, ld)
	if err != nil {
		// Sent again at the workload's next change or flush: the state is whole, not a diff.
		c.mu.Lock()
		for _, k := range sent {
			c.pending[k] = true
			delete(c.serials, k)
		}
		c.mu.Unlock()
		return errors.Join(errors.New("aibom: delivering log records"), err)
	}
	c.records.Add(ctx, int64(len(sent)))
	return nil
}
