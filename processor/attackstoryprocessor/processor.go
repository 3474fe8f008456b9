package attackstoryprocessor

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"

	"github.com/agenttrail/agenttrail/internal/handoff"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/finding"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/policy"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/rules"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// storyProcessor buffers spans into stories and emits each story, with its finding if any,
// from its own goroutine when it is complete. It implements processor.Traces itself rather
// than through processorhelper.NewTraces, whose synchronous "process and pass on" model does
// not fit a processor that holds data back.
type storyProcessor struct {
	cfg            *Config
	logger         *zap.Logger
	next           consumer.Traces
	clock          Clock
	tel            *telemetry
	pols           *policy.Set
	custom         []*rules.Custom
	markers        []string
	disabled       map[string]bool
	profiles       *profile.Store
	enf            *enforcement.Enforcer
	inbound        *story.Inbound // peers that connected to each process: sends to them are replies
	productVersion string
	tickEvery      time.Duration

	mu  sync.Mutex // guards buf
	buf *story.Buffer

	emitMu        sync.Mutex // one emission at a time; guards profiles and loggedRuleErr
	loggedRuleErr map[string]bool

	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
	manual  bool // tests: no emitter goroutine, the test calls emit
}

var _ processor.Traces = (*storyProcessor)(nil)

func newProcessor(set processor.Settings, cfg *Config, next consumer.Traces, clock Clock) (*storyProcessor, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	custom, err := rules.CompileCustom(cfg.CustomRules)
	if err != nil {
		return nil, err
	}
	pols := newPolicies(cfg)
	p := &storyProcessor{
		cfg:            cfg,
		logger:         set.Logger,
		next:           next,
		clock:          clock,
		tel:            tel,
		pols:           pols,
		enf:            enforcement.New(enforcerSettingsOf(cfg), pols, set.Logger, tel, clock),
		custom:         custom,
		disabled:       map[string]bool{},
		profiles:       profile.NewStore(cfg.ProfilesDir, cfg.ProfilesSaveInterval, cfg.Learning, set.Logger),
		productVersion: set.BuildInfo.Version,
		buf:            story.NewBuffer(limitsOf(cfg), tel),
		inbound:        story.NewInbound(story.MaxInbound),
		loggedRuleErr:  map[string]bool{},
		kick:           make(chan struct{}, 1),
		stop:           make(chan struct{}),
	}
	for _, m := range cfg.InjectionMarkers {
		p.markers = append(p.markers, story.NormalizeSpace(strings.ToLower(m)))
	}
	for _, id := range cfg.Rules.Disabled {
		p.disabled[id] = true
	}
	p.tickEvery = min(max(cfg.CompletionGrace/4, 5*time.Millisecond), 250*time.Millisecond)
	return p, nil
}

func (p *storyProcessor) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

// Start loads the profiles and starts the emitter.
func (p *storyProcessor) Start(_ context.Context, host component.Host) error {
	if err := p.profiles.Start(p.clock.Now()); err != nil {
		return err
	}
	p.enf.Host = host
	var enforce []string
	if p.cfg.DefaultMode == profile.ModeEnforce {
		enforce = append(enforce, "default_mode")
	}
	for _, e := range p.pols.Entries {
		if e.P.Mode == profile.ModeEnforce && e.P.ConfiguredFor != "" {
			enforce = append(enforce, e.P.ConfiguredFor)
		}
	}
	if len(enforce) > 0 {
		p.logger.Info("Mode enforce: the kernel enforces each of these workloads once its profile is complete and its cgroup known; until then it is in mode alert",
			zap.Strings("workloads", enforce))
	}
	p.enf.Start()
	p.enf.Reconcile(p.profiles)
	p.logger.Info("Attack-story processor started",
		zap.String("profiles_dir", p.cfg.ProfilesDir), zap.String("default_mode", string(p.cfg.DefaultMode)),
		zap.Int("workloads", len(p.cfg.Workloads)), zap.Int("custom_rules", len(p.custom)),
		zap.Duration("completion_grace", p.cfg.CompletionGrace))
	if !p.manual {
		p.started = true
		p.wg.Add(1)
		go p.run()
	}
	return nil
}

// Shutdown stops the emitter, detaches every enforcement program, then emits every story in
// flight as incomplete (reason shutdown) with the decisions they hold, the other decisions as
// stories of their own, and saves the profiles.
func (p *storyProcessor) Shutdown(ctx context.Context) error {
	if p.started {
		close(p.stop)
		p.wg.Wait()
		p.started = false
	}
	p.emitMu.Lock()
	p.enf.Shutdown()
	p.emitMu.Unlock()
	p.emit(ctx, true)
	return nil
}

// idleTick is how often the emitter looks when no story is in flight: profiles' learning
// windows and enforcement decisions no story claimed. A story arriving wakes it at once.
const idleTick = time.Second

// run emits what is ready, every tickEvery while stories are in flight and every idleTick
// otherwise, so that an idle collector is not woken several times a second for nothing.
func (p *storyProcessor) run() {
	defer p.wg.Done()
	busy := p.clock.NewTicker(p.tickEvery)
	defer busy.Stop()
	idle := p.clock.NewTicker(max(idleTick, p.tickEvery))
	defer idle.Stop()
	ctx := context.Background()
	for {
		tick := idle.C()
		if p.inFlight() {
			tick = busy.C()
		}
		select {
		case <-p.stop:
			return
		case <-tick:
			p.emit(ctx, false)
		case <-p.kick:
			p.emit(ctx, false)
		}
	}
}

func (p *storyProcessor) inFlight() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf.Stories) > 0 || len(p.buf.Evicted) > 0
}

// ConsumeTraces buffers the spans; they are passed on when their story is complete. With
// wait_for_handoff it returns then (or when ctx ends, with an error: the sender sends again
// and its repeated spans wait for the first copies), so that nothing is acknowledged to a
// sender while only this process's memory holds it.
func (p *storyProcessor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	var ack *handoff.Ack
	if p.cfg.WaitForHandoff {
		ack = handoff.New()
	}
	p.mu.Lock()
	wasIdle := len(p.buf.Stories) == 0
	p.buf.AddBatchFor(td, p.clock.Now(), ack)
	evicted := len(p.buf.Evicted)
	started := len(p.buf.Starts) > 0
	p.mu.Unlock()
	if wasIdle || started {
		// The emitter may be on its idle tick: it switches to the busy one.
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	if evicted > 0 {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	if evicted >= p.cfg.MaxStories {
		// The emitter is behind: emit here, so that the producer slows down instead of
		// the evicted stories piling up.
		p.emit(ctx, false)
	}
	return ack.Wait(ctx)
}

// emit passes on the stories that are ready (all of them when flushAll).
func (p *storyProcessor) emit(ctx context.Context, flushAll bool) {
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	now := p.clock.Now()
	p.mu.Lock()
	ready := p.buf.TakeReady(now, flushAll)
	starts, startAcks := p.buf.Starts, p.buf.StartAcks
	p.buf.Starts, p.buf.StartAcks = nil, nil
	p.mu.Unlock()
	td := ptrace.NewTraces()
	for _, rs := range starts {
		p.processStarted(rs)
		rs.MoveTo(td.ResourceSpans().AppendEmpty())
	}
	for _, st := range ready {
		p.inbound.Learn(st)
	}
	if n := p.inbound.Evicted; n > 0 {
		p.tel.Dropped("inbound_peers", n)
		p.inbound.Evicted = 0
	}
	fs := make([]*story.Facts, len(ready))
	for i, st := range ready {
		fs[i] = story.ExtractWith(st, p.inbound)
	}
	blocked := p.enf.Claim(fs, p.inFlightContains)
	for i := range ready {
		p.process(td, fs[i], blocked[i], now)
	}
	unmatched := p.enf.Expired(now, flushAll, p.lastSeenOf)
	for _, pd := range unmatched {
		p.enf.WriteUnmatched(td, pd)
	}
	if n := len(ready) + len(unmatched) + len(starts); n > 0 {
		err := p.next.ConsumeTraces(ctx, td)
		if err != nil {
			msg := "The next component refused stories: they are lost"
			if p.cfg.WaitForHandoff {
				msg = "The next component refused stories: the senders still waiting get the error and send their spans again"
			}
			p.logger.Error(msg, zap.Int("stories", n), zap.Int("spans", td.SpanCount()), zap.Error(err))
		}
		// Only now, with the next component's answer, are the waiting requests answered.
		for _, st := range ready {
			st.Handed(err)
		}
		for _, a := range startAcks {
			a.Done(err)
		}
	}
	if p.profiles.Tick(now, flushAll) {
		p.enf.Reconcile(p.profiles)
	}
}

// inFlightContains reports whether a story in flight of process pid spans time t (a story
// whose root has not arrived spans everything after its first span).
func (p *storyProcessor) inFlightContains(pid int64, t time.Time) bool {
	prefix := strconv.FormatInt(pid, 10) + "|"
	ns := uint64(t.UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	for proc, set := range p.buf.ByProc {
		if !strings.HasPrefix(proc, prefix) {
			continue
		}
		for st := range set {
			if st.EnvelopeContains(ns, ns) {
				return true
			}
		}
	}
	return false
}

// lastSeenOf is when a story in flight of process pid last got a span (zero: none).
func (p *storyProcessor) lastSeenOf(pid uint32) time.Time {
	prefix := strconv.FormatUint(uint64(pid), 10) + "|"
	var last time.Time
	p.mu.Lock()
	defer p.mu.Unlock()
	for proc, set := range p.buf.ByProc {
		if !strings.HasPrefix(proc, prefix) {
			continue
		}
		for st := range set {
			if st.LastSeen.After(last) {
				last = st.LastSeen
			}
		}
	}
	return last
}

// processStarted tells enforcement about a process of a workload that is traced from now on
// (the receiver's process.start span): in mode enforce, with a complete profile, its cgroup
// (a new pod) is enforced before its first story. It creates no profile.
func (p *storyProcessor) processStarted(rs ptrace.ResourceSpans) {
	res := rs.Resource().Attributes()
	wid := profile.WorkloadOf(res)
	prof := p.profiles.Find(wid)
	if prof == nil {
		return // a workload never seen: nothing learned, nothing to enforce
	}
	p.enf.Observe(wid, res, p.pols.Resolve(res), prof, p.profiles)
}

// process judges one story (with the kernel decisions it holds), learns from it, and appends
// it to td.
func (p *storyProcessor) process(td ptrace.Traces, f *story.Facts, blocked []enforcement.BlockMatch, now time.Time) {
	st := f.Story
	res := f.HeadResource()
	pol := p.pols.Resolve(res)
	wid := profile.WorkloadOf(res)
	// A story that may not be learned is judged against the workload's profile but never
	// makes one.
	notLearned := f.NotLearnable(p.cfg.Learning.EntryPoints)
	var prof *profile.Profile
	if notLearned == "" {
		prof = p.profiles.Get(wid, now)
	} else {
		prof = p.profiles.Find(wid)
	}
	mode := p.enf.Observe(wid, res, pol, prof, p.profiles)
	c := &rules.Context{Facts: f, Policy: pol, Profile: prof, Mode: mode, VolumeFactor: p.cfg.Rules.DataVolumeFactor, Standalone: p.cfg.Rules.PromptInjectionStandalone, Markers: p.markers, Disabled: p.disabled, Custom: p.custom,
		Blocked: blocked, Enforced: mode == profile.ModeEnforce}
	hits := c.Evaluate()
	p.tel.unscannedTexts(f)
	var fd *finding.Finding
	if len(hits) > 0 {
		fd = finding.New(c, hits, now, p.productVersion)
		for _, id := range fd.RuleIDs {
			p.tel.finding(id)
		}
		notLearned = story.NotLearnedFinding
	} else if prof != nil && notLearned == "" {
		prof.Learn(f, st.Reason == "", now, p.cfg.Learning, pol.Sensitive)
	}
	if notLearned != "" {
		p.tel.notLearned(notLearned)
	}
	for _, r := range p.custom {
		if r.Failures > 0 && !p.loggedRuleErr[r.Def.ID] {
			p.loggedRuleErr[r.Def.ID] = true
			p.logger.Warn("Custom rule failed on a story and counts as not matching (logged once per rule)", zap.String("rule", r.Def.ID), zap.Error(r.LastErr))
		}
	}
	writeStory(td, f, fd, p.cfg.Tier, now)
	enforcement.WriteBlocked(f, blocked)
	if st.Reason == "" {
		p.tel.story("complete")
	} else {
		p.tel.story("incomplete")
	}
}

// writeStory moves the story's spans into td in narrative order, grouped by resource and
// scope, flags an incomplete story on its top spans, and puts the finding, made by this tier,
// on the head span.
func writeStory(td ptrace.Traces, f *story.Facts, fd *finding.Finding, tier string, now time.Time) {
	resources := map[string]ptrace.ResourceSpans{}
	scopes := map[string]ptrace.SpanSlice{}
	for _, sp := range f.Spans {
		spans, ok := scopes[sp.Scope.Key]
		if !ok {
			rs, ok := resources[sp.Scope.Src.Key]
			if !ok {
				rs = td.ResourceSpans().AppendEmpty()
				sp.Scope.Src.Resource.CopyTo(rs.Resource())
				rs.SetSchemaUrl(sp.Scope.Src.SchemaURL)
				resources[sp.Scope.Src.Key] = rs
			}
			ss := rs.ScopeSpans().AppendEmpty()
			sp.Scope.Scope.CopyTo(ss.Scope())
			ss.SetSchemaUrl(sp.Scope.SchemaURL)
			spans = ss.Spans()
			scopes[sp.Scope.Key] = spans
		}
		dst := spans.AppendEmpty()
		sp.Span.MoveTo(dst)
		sp.Span = dst
	}
	if f.Story.Reason != "" {
		for i, sp := range f.Spans {
			if f.Parent[i] < 0 {
				sp.Span.Attributes().PutBool(story.AttrIncomplete, true)
				sp.Span.Attributes().PutStr(story.AttrIncompleteReason, f.Story.Reason)
			}
		}
	}
	if fd == nil || len(f.Spans) == 0 {
		return
	}
	head := f.Spans[f.Head].Span
	prior, omitted := priorFindings(f, fd.UID)
	putFindingAttributes(head.Attributes(), fd)
	head.Attributes().PutStr(story.AttrFindingTier, tier)
	ev := head.Events().AppendEmpty()
	ev.SetName(story.FindingEventName)
	ev.SetTimestamp(pcommon.NewTimestampFromTime(now))
	attrs := ev.Attributes()
	putFindingAttributes(attrs, fd)
	attrs.PutStr(story.AttrFindingUID, fd.UID)
	attrs.PutStr(story.AttrFindingTier, tier)
	attrs.PutStr(story.AttrFindingTitle, fd.Title)
	attrs.PutStr(story.AttrFindingMode, string(fd.Mode))
	attrs.PutStr(story.AttrFindingNarrative, fd.Narrative)
	attrs.PutStr(story.AttrFindingOCSF, fd.OCSF)
	if len(prior) > 0 {
		// The gateway judged the whole story; the agents' findings on its halves are parts of
		// it: a consumer shows this one and hides the ones named (both tiers keep judging: the
		// agent for its node's enforcement and when no gateway runs).
		for _, m := range []pcommon.Map{attrs, head.Attributes()} {
			sl := m.PutEmptySlice(story.AttrFindingSupersedes)
			for _, uid := range prior {
				sl.AppendEmpty().SetStr(uid)
			}
			if omitted > 0 {
				m.PutInt(story.AttrFindingSupersedesOmitted, int64(omitted))
			}
		}
	}
	if fd.ToolNotEnforceable {
		head.Attributes().PutStr(enforcement.AttrEnforcementTool, enforcement.ToolNotEnforceable)
		attrs.PutStr(enforcement.AttrEnforcementTool, enforcement.ToolNotEnforceable)
		for _, i := range fd.ToolSpans {
			f.Spans[i].Span.Attributes().PutStr(enforcement.AttrEnforcementTool, enforcement.ToolNotEnforceable)
		}
	}
}

// maxSuperseded bounds the uids a finding names as superseded (they come from the agents, over
// the network); maxUIDLen bounds one (the processor's own are 36 characters).
const (
	maxSuperseded = 16
	maxUIDLen     = 64
)

// priorFindings are the uids on finding events already on the story's spans when it was
// judged here, in span order, without repeats, at most maxSuperseded (omitted counts the rest,
// and uids that are empty or longer than maxUIDLen). own is left out: an agent's finding on the
// same head span of the same trace has this finding's uid (<trace id>-<span id>) — a consumer
// keying findings by uid already sees one.
func priorFindings(f *story.Facts, own string) (uids []string, omitted int) {
	seen := map[string]bool{own: true}
	for _, sp := range f.Spans {
		evs := sp.Span.Events()
		for i := 0; i < evs.Len(); i++ {
			ev := evs.At(i)
			if ev.Name() != story.FindingEventName {
				continue
			}
			v, ok := ev.Attributes().Get(story.AttrFindingUID)
			if !ok {
				continue
			}
			uid := v.AsString()
			switch {
			case seen[uid]:
			case uid == "" || len(uid) > maxUIDLen || len(uids) >= maxSuperseded:
				omitted++
			default:
				seen[uid] = true
				uids = append(uids, uid)
			}
		}
	}
	return uids, omitted
}

func putFindingAttributes(m pcommon.Map, fd *finding.Finding) {
	ids := m.PutEmptySlice(story.AttrFindingRuleIDs)
	for _, id := range fd.RuleIDs {
		ids.AppendEmpty().SetStr(id)
	}
	m.PutStr(story.AttrFindingSeverity, rules.SeverityNames[fd.Severity])
	m.PutInt(story.AttrFindingSeverityID, int64(fd.Severity))
	atlas := m.PutEmptySlice(story.AttrFindingAtlasIDs)
	for _, id := range fd.AtlasIDs {
		atlas.AppendEmpty().SetStr(id)
	}
}

// limitsOf is the buffer's part of the configuration.
func limitsOf(cfg *Config) story.Limits {
	return story.Limits{MaxStories: cfg.MaxStories, MaxSpansPerStory: cfg.MaxSpansPerStory,
		CompletionGrace: cfg.CompletionGrace, OrphanTimeout: cfg.OrphanTimeout, Stitching: cfg.Stitching}
}

// enforcerSettingsOf is the enforcer's part of the configuration.
func enforcerSettingsOf(cfg *Config) enforcement.Settings {
	return enforcement.Settings{Config: cfg.Enforcement, CompletionGrace: cfg.CompletionGrace, OrphanTimeout: cfg.OrphanTimeout, StateDir: cfg.ProfilesDir, ScopeName: ScopeName}
}
