package attackstoryprocessor

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/enforcement"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/rules"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// Mode is what the processor does with the stories of a workload (profile.Mode: the profile
// file's mode: field has the same values).
type Mode = profile.Mode

// The modes.
const (
	ModeObserve = profile.ModeObserve
	ModeAlert   = profile.ModeAlert
	ModeEnforce = profile.ModeEnforce
)

// LearningConfig is the learning window of the behavioural profiles (profile.LearningConfig).
type LearningConfig = profile.LearningConfig

// EnforcementConfig is the kernel enforcement of mode enforce (enforcement.Config).
type EnforcementConfig = enforcement.Config

// CustomRuleConfig is a user rule: a CEL expression over the story that evaluates to a bool
// (rules.CustomRuleConfig).
type CustomRuleConfig = rules.CustomRuleConfig

// Config is the configuration of the attack-story processor. Every key is documented in README.md.
type Config struct {
	// CompletionGrace is how long a story whose root span has arrived waits without new spans
	// before it is complete and emitted.
	CompletionGrace time.Duration `mapstructure:"completion_grace"`
	// OrphanTimeout is how long a story without a root span waits without new spans before it
	// is emitted as incomplete (reason orphan_timeout).
	OrphanTimeout time.Duration `mapstructure:"orphan_timeout"`
	// MaxStories bounds the stories in flight; the least recently updated one is emitted early
	// (incomplete, reason max_stories) to make room.
	MaxStories int `mapstructure:"max_stories"`
	// MaxSpansPerStory bounds one story; a story reaching it is emitted early (incomplete,
	// reason max_spans_per_story) and its later spans form a continuation story.
	MaxSpansPerStory int `mapstructure:"max_spans_per_story"`
	// Stitching moves root spans of other traces of the same process into the one story whose
	// time span contains them.
	Stitching bool `mapstructure:"stitching"`
	// WaitForHandoff: ConsumeTraces returns only once every span of the batch was passed on
	// with its story (the next component's answer is the caller's). Behind an OTLP receiver
	// the sender is then acknowledged only when its spans are downstream (the gateway).
	WaitForHandoff bool `mapstructure:"wait_for_handoff"`
	// ProfilesDir holds one YAML profile per workload. Empty: profiles live in memory only.
	ProfilesDir string `mapstructure:"profiles_dir"`
	// ProfilesSaveInterval debounces profile writes, and is how often the folder is checked
	// for files edited by hand.
	ProfilesSaveInterval time.Duration `mapstructure:"profiles_save_interval"`
	// Learning is the learning window of the profiles.
	Learning profile.LearningConfig `mapstructure:"learning"`
	// DefaultMode is the mode of workloads that no entry of Workloads matches.
	DefaultMode profile.Mode `mapstructure:"default_mode"`
	// Workloads are per-workload modes and declared permission boundaries; the first entry
	// whose match fits a story's resource applies.
	Workloads []WorkloadConfig `mapstructure:"workloads"`
	// SensitivePaths are path patterns whose read followed by egress is a finding.
	SensitivePaths []string `mapstructure:"sensitive_paths"`
	// InjectionMarkers are phrases that mark a prompt injection (case-insensitive).
	InjectionMarkers []string `mapstructure:"injection_markers"`
	// Rules tunes the built-in rules.
	Rules RulesConfig `mapstructure:"rules"`
	// CustomRules are the user's own rules, as CEL expressions over the story.
	CustomRules []CustomRuleConfig `mapstructure:"custom_rules"`
	// Enforcement locates the cgroups of enforced workloads on this node.
	Enforcement EnforcementConfig `mapstructure:"enforcement"`
	// Tier names this collector's tier ("agent" on a node, "gateway" behind the agents) on its
	// findings (agenttrail.finding.tier): a findings connector behind a later tier emits only
	// its own tier's findings, the earlier tiers having sent theirs already.
	Tier string `mapstructure:"tier"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// WorkloadConfig selects workloads by resource attributes and sets their mode and boundaries.
type WorkloadConfig struct {
	// Match maps resource attribute names to the values a workload must have (all of them).
	Match map[string]string `mapstructure:"match"`
	// Mode overrides default_mode.
	Mode profile.Mode `mapstructure:"mode"`
	// AllowedTools is a declared boundary: any other tool is a finding, in every mode.
	AllowedTools []string `mapstructure:"allowed_tools"`
	// AllowedDestinations is a declared boundary: egress elsewhere is a finding, in every mode.
	AllowedDestinations []string `mapstructure:"allowed_destinations"`
	// SensitivePaths are added to the processor-wide sensitive_paths for this workload.
	SensitivePaths []string `mapstructure:"sensitive_paths"`
	// MaxEgressBytes is a data-volume threshold per story (0: none).
	MaxEgressBytes int64 `mapstructure:"max_egress_bytes"`
	// MaxConnects is a connect-count threshold per story (0: none).
	MaxConnects int `mapstructure:"max_connects"`
	// AllowedFlows are known flows of sensitive data: a sensitive read followed by egress
	// that one of them covers does not raise sensitive_read_then_egress.
	AllowedFlows []FlowConfig `mapstructure:"allowed_flows"`
}

// FlowConfig declares one accepted flow of sensitive data out of a workload.
type FlowConfig struct {
	// Tool is the tool that sends the data ("": any tool, or none).
	Tool string `mapstructure:"tool"`
	// Data is a path pattern of the sensitive file read ("": any sensitive file).
	Data string `mapstructure:"data"`
	// Destination is where the data may go, in the syntax of allowed_destinations (required).
	Destination string `mapstructure:"destination"`
	// MaxBytes bounds the bytes sent to the destination in one story (0: no bound).
	MaxBytes int64 `mapstructure:"max_bytes"`
}

// RulesConfig tunes the built-in rules.
type RulesConfig struct {
	// Disabled lists built-in rule ids that never fire.
	Disabled []string `mapstructure:"disabled"`
	// PromptInjectionStandalone makes prompt_injection_markers a finding on its own; by default
	// it is supporting evidence added to a finding of another rule.
	PromptInjectionStandalone bool `mapstructure:"prompt_injection_standalone"`
	// DataVolumeFactor: data_volume_anomaly fires above this many times the learned p95.
	DataVolumeFactor float64 `mapstructure:"data_volume_factor"`
}

// Defaults.
const (
	defaultCompletionGrace      = 300 * time.Millisecond
	defaultOrphanTimeout        = 30 * time.Second
	defaultMaxStories           = 10000
	defaultMaxSpansPerStory     = 2000
	defaultProfilesSaveInterval = 5 * time.Second
	defaultMinStories           = 20
	defaultMinDuration          = time.Hour
	defaultMaxEntries           = 256
	defaultDataVolumeFactor     = 10
)

func defaultSensitivePaths() []string {
	return []string{"*/customers.*", "*.db", "*/secrets/*", "/etc/shadow"}
}

func defaultInjectionMarkers() []string {
	return []string{
		"ignore previous instructions",
		"ignore all previous instructions",
		"ignore prior instructions",
		"disregard previous instructions",
		"disregard all prior instructions",
		"forget your instructions",
		"system override",
		"you are now",
		"developer mode",
		"do anything now",
	}
}

func createDefaultConfig() *Config {
	return &Config{
		CompletionGrace:      defaultCompletionGrace,
		OrphanTimeout:        defaultOrphanTimeout,
		MaxStories:           defaultMaxStories,
		MaxSpansPerStory:     defaultMaxSpansPerStory,
		Stitching:            true,
		ProfilesSaveInterval: defaultProfilesSaveInterval,
		Learning: profile.LearningConfig{
			MinStories:  defaultMinStories,
			MinDuration: defaultMinDuration,
			MaxEntries:  defaultMaxEntries,
		},
		DefaultMode:      profile.ModeObserve,
		SensitivePaths:   defaultSensitivePaths(),
		InjectionMarkers: defaultInjectionMarkers(),
		Rules:            RulesConfig{DataVolumeFactor: defaultDataVolumeFactor},
		Enforcement:      EnforcementConfig{ProcRoot: "/proc"},
		Tier:             DefaultTier,
	}
}

// DefaultTier is the tier of a finding that does not name one (the agent's, and every finding
// made before tier existed).
const DefaultTier = "agent"

// tierPattern is what a tier may be: it becomes an attribute value and a metric label of the
// findings connector, so it is short and plain.
var tierPattern = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// matchKeys are the resource attributes a workload can be selected by.
var matchKeys = []string{
	"service.name",
	"service.namespace",
	"k8s.namespace.name",
	"k8s.deployment.name",
	"k8s.statefulset.name",
	"k8s.daemonset.name",
	"k8s.container.name",
	"k8s.pod.name",
	"k8s.pod.service_account.name",
	"k8s.node.name",
	"container.id",
	"process.executable.path",
	"host.name",
}

// Validate checks the configuration without touching anything outside it. It returns the first
// problem, naming the key. Custom rules are compiled here (compiling CEL is pure).
func (c *Config) Validate() error {
	if c.CompletionGrace <= 0 {
		return fmt.Errorf(`"completion_grace" must be positive, got %s`, c.CompletionGrace)
	}
	if c.OrphanTimeout < c.CompletionGrace {
		return fmt.Errorf(`"orphan_timeout" (%s) must not be shorter than "completion_grace" (%s)`, c.OrphanTimeout, c.CompletionGrace)
	}
	if !tierPattern.MatchString(c.Tier) {
		return fmt.Errorf(`"tier" must be 1 to 32 of a-z, 0-9, _ and -, got %q`, c.Tier)
	}
	if c.MaxStories < 1 {
		return fmt.Errorf(`"max_stories" must be at least 1, got %d`, c.MaxStories)
	}
	if c.MaxSpansPerStory < 1 {
		return fmt.Errorf(`"max_spans_per_story" must be at least 1, got %d`, c.MaxSpansPerStory)
	}
	if c.ProfilesSaveInterval <= 0 {
		return fmt.Errorf(`"profiles_save_interval" must be positive, got %s`, c.ProfilesSaveInterval)
	}
	if c.Learning.MinStories < 1 {
		return fmt.Errorf(`"learning.min_stories" must be at least 1, got %d`, c.Learning.MinStories)
	}
	if c.Learning.MinDuration < 0 {
		return fmt.Errorf(`"learning.min_duration" must not be negative, got %s`, c.Learning.MinDuration)
	}
	if c.Learning.MaxEntries < 1 {
		return fmt.Errorf(`"learning.max_entries" must be at least 1, got %d`, c.Learning.MaxEntries)
	}
	if c.Learning.MaxEntries > profile.MaxProfileEntries {
		return fmt.Errorf(`"learning.max_entries" must be at most %d (what a profile file may hold), got %d`, profile.MaxProfileEntries, c.Learning.MaxEntries)
	}
	for i, e := range c.Learning.EntryPoints {
		if strings.TrimSpace(e) == "" {
			return fmt.Errorf(`"learning.entry_points[%d]" must not be empty`, i)
		}
	}
	if err := profile.ValidMode(c.DefaultMode, false); err != nil {
		return fmt.Errorf(`"default_mode": %w`, err)
	}
	for i, p := range c.SensitivePaths {
		if _, err := match.Compile(p); err != nil {
			return fmt.Errorf(`"sensitive_paths[%d]": %w`, i, err)
		}
	}
	for i, m := range c.InjectionMarkers {
		if strings.TrimSpace(m) == "" {
			return fmt.Errorf(`"injection_markers[%d]" is empty`, i)
		}
	}
	for i := range c.Workloads {
		if err := c.Workloads[i].validate(); err != nil {
			return fmt.Errorf(`"workloads[%d].%w`, i, err)
		}
	}
	for i, id := range c.Rules.Disabled {
		if rules.Builtin(id) == nil {
			return fmt.Errorf(`"rules.disabled[%d]": %q is not a built-in rule (%s)`, i, id, strings.Join(rules.BuiltinIDs(), ", "))
		}
	}
	if c.Rules.DataVolumeFactor <= 1 {
		return fmt.Errorf(`"rules.data_volume_factor" must be greater than 1, got %g`, c.Rules.DataVolumeFactor)
	}
	if _, err := rules.CompileCustom(c.CustomRules); err != nil {
		return err
	}
	if c.Enforcement.ProcRoot == "" {
		return errors.New(`"enforcement.proc_root" must not be empty`)
	}
	if r := c.Enforcement.CgroupRoot; r != "" && !filepath.IsAbs(r) {
		return fmt.Errorf(`"enforcement.cgroup_root" must be an absolute path, got %q`, r)
	}
	return nil
}

// validate returns errors that start with the key below "workloads[i]." (the caller adds it).
func (w *WorkloadConfig) validate() error {
	if len(w.Match) == 0 {
		return errors.New(`match" is required: at least one resource attribute, e.g. service.name`)
	}
	for _, k := range story.SortedKeys(w.Match) {
		if !slices.Contains(matchKeys, k) {
			return fmt.Errorf(`match": %q is not a supported attribute (%s)`, k, strings.Join(matchKeys, ", "))
		}
		if w.Match[k] == "" {
			return fmt.Errorf(`match.%s" is empty`, k)
		}
	}
	if err := profile.ValidMode(w.Mode, true); err != nil {
		return fmt.Errorf(`mode": %w`, err)
	}
	for i, t := range w.AllowedTools {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf(`allowed_tools[%d]" is empty`, i)
		}
	}
	for i, d := range w.AllowedDestinations {
		if _, err := match.ParseDest(d); err != nil {
			return fmt.Errorf(`allowed_destinations[%d]": %w`, i, err)
		}
	}
	for i, p := range w.SensitivePaths {
		if _, err := match.Compile(p); err != nil {
			return fmt.Errorf(`sensitive_paths[%d]": %w`, i, err)
		}
	}
	if w.MaxEgressBytes < 0 {
		return fmt.Errorf(`max_egress_bytes" must not be negative, got %d`, w.MaxEgressBytes)
	}
	if w.MaxConnects < 0 {
		return fmt.Errorf(`max_connects" must not be negative, got %d`, w.MaxConnects)
	}
	for i, fl := range w.AllowedFlows {
		if strings.TrimSpace(fl.Destination) == "" {
			return fmt.Errorf(`allowed_flows[%d].destination" is required`, i)
		}
		if _, err := match.ParseDest(fl.Destination); err != nil {
			return fmt.Errorf(`allowed_flows[%d].destination": %w`, i, err)
		}
		if fl.Data != "" {
			if _, err := match.Compile(fl.Data); err != nil {
				return fmt.Errorf(`allowed_flows[%d].data": %w`, i, err)
			}
		}
		if fl.MaxBytes < 0 {
			return fmt.Errorf(`allowed_flows[%d].max_bytes" must not be negative, got %d`, i, fl.MaxBytes)
		}
	}
	return nil
}
