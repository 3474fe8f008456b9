package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.yaml.in/yaml/v3"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

// This file is the profile API of the `agenttrail profile` commands: read a profile file,
// print it for review, set its mode, and tell what enforcing it would have blocked.

// File is one profile file of profiles_dir.
type File struct {
	Path string
	Prof *Profile
}

// ReadFile reads and checks one profile file (errors name the line).
func ReadFile(path string) (*File, error) {
	b, err := ReadFileBytes(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.file = filepath.Base(path)
	return &File{Path: path, Prof: p}, nil
}

// ReadDir reads every profile file of dir, in file name order; files that cannot be
// read are returned as errors.
func ReadDir(dir string) ([]*File, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{err}
	}
	var out []*File
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		f, err := ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	return out, errs
}

// Key is the workload key: namespace/controller/container, or "service.name executable".
func (f *File) Key() string { return f.Prof.ID.Key }

// Workload is the profile's workload attributes.
func (f *File) Workload() map[string]string { return f.Prof.Data.Workload }

// Status is learning or complete.
func (f *File) Status() string { return f.Prof.Data.Status }

// Version is the profile's version.
func (f *File) Version() int { return f.Prof.Data.Version }

// Mode is the profile's mode field ("" when the configuration decides).
func (f *File) Mode() string { return f.Prof.Data.Mode }

// Matches reports whether name designates this profile: its file name (with or without
// .yaml), that name without its hash, its workload key, or the value of one of its workload
// attributes (service.name, k8s.deployment.name, ...).
func (f *File) Matches(name string) bool {
	base := filepath.Base(f.Path)
	stem := strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	short := stem
	if i := strings.LastIndexByte(stem, '-'); i > 0 && len(stem)-i-1 == 8 {
		short = stem[:i]
	}
	if name == base || name == stem || name == short || name == f.Prof.ID.Key || name == f.Path {
		return true
	}
	for _, v := range f.Prof.Data.Workload {
		if v == name {
			return true
		}
	}
	return false
}

// WriteText prints the profile for a reviewer, in a stable order (lists sorted, one item per
// line), so that two versions can be compared with diff.
func (f *File) WriteText(w io.Writer) {
	d := &f.Prof.Data
	line := func(k, v string) { fmt.Fprintf(w, "%-13s%s\n", k, v) }
	line("profile", f.Path)
	line("workload", f.Prof.ID.Key)
	for _, k := range story.SortedKeys(d.Workload) {
		line("", k+"="+d.Workload[k])
	}
	line("status", d.Status)
	line("version", fmt.Sprint(d.Version))
	switch d.Mode {
	case "":
		line("mode", "(not set: the collector's configuration decides)")
	default:
		line("mode", d.Mode+" (set in the profile)")
	}
	stamps := []string{fmt.Sprintf("%d stories", d.Stories)}
	for _, s := range []struct {
		k string
		t time.Time
	}{{"first seen", d.FirstSeen}, {"updated", d.Updated}, {"completed", d.Completed}} {
		if !s.t.IsZero() {
			stamps = append(stamps, s.k+" "+s.t.UTC().Format(time.RFC3339))
		}
	}
	line("learned", strings.Join(stamps, ", "))
	list := func(title string, items []string, empty string) {
		fmt.Fprintf(w, "\n%s (%d)\n", title, len(items))
		if len(items) == 0 {
			fmt.Fprintf(w, "  (none%s)\n", empty)
		}
		for _, it := range items {
			fmt.Fprintf(w, "  %s\n", it)
		}
	}
	list("tools", d.Tools, "")
	if len(d.Functions) > 0 {
		fmt.Fprintf(w, "\nfunctions\n")
		for _, role := range story.SortedKeys(d.Functions) {
			fns := slices.Clone(d.Functions[role])
			slices.Sort(fns)
			for _, fn := range fns {
				fmt.Fprintf(w, "  %s: %s\n", role, fn)
			}
		}
	}
	list("executables", d.Executables, ": in mode enforce, every exec is stopped")
	list("files", d.Files, "")
	var dests []string
	for _, dst := range d.Destinations {
		dests = append(dests, describeDest(dst))
	}
	list("destinations", dests, ": in mode enforce, every outbound connection is refused")
	var flows []string
	for _, fl := range d.Flows {
		tool := fl.Tool
		if tool == "" {
			tool = "(no tool)"
		}
		flows = append(flows, fmt.Sprintf("%s read %s, sent to %s (at most %d bytes seen)", tool, fl.Data, fl.Destination, fl.BytesMax))
	}
	if len(flows) > 0 {
		list("flows", flows, "")
	}
	v := d.DataVolume
	fmt.Fprintf(w, "\n")
	line("data volume", fmt.Sprintf("connects p95 %d max %d; bytes sent p95 %d max %d (%d samples)",
		v.ConnectsP95, v.ConnectsMax, v.BytesSentP95, v.BytesSentMax, len(v.ConnectsSamples)))
	if len(d.Truncated) > 0 {
		line("truncated", strings.Join(d.Truncated, ", ")+" (lists that reached learning.max_entries)")
	}
}

func describeDest(d Dest) string {
	port := "any port"
	if d.Port != 0 {
		port = fmt.Sprintf("port %d", d.Port)
	}
	var parts []string
	switch {
	case d.CIDR != "":
		parts = append(parts, d.CIDR+" "+port)
		if d.Address != "" {
			parts = append(parts, "(seen "+d.Address+")")
		}
	case d.Address != "":
		parts = append(parts, d.Address+" "+port)
	default:
		parts = append(parts, d.Host+" "+port+" (host name only: not enforceable by the kernel)")
	}
	if d.Host != "" && (d.CIDR != "" || d.Address != "") {
		parts = append(parts, "host "+d.Host)
	}
	return strings.Join(parts, " ")
}

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	if err := ValidMode(Mode(s), false); err != nil {
		return "", err
	}
	return Mode(s), nil
}

// ErrNotComplete is returned by SetProfileMode for a promotion to enforce of a profile
// that is still learning.
var ErrNotComplete = errors.New("a profile must be complete (status: complete) to be enforced")

// SetMode writes mode into the profile file (the `mode:` field, after `status:`),
// keeping the rest of the file and its comments as they are, atomically. The collector's
// periodic reload (profiles_save_interval) picks it up. Mode enforce needs status complete.
// It returns the mode the file had ("" for none).
func SetMode(path string, mode Mode) (previous string, err error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return "", err
	}
	b, err := ReadFileBytes(path)
	if err != nil {
		return "", err
	}
	p, err := Parse(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	previous = p.Data.Mode
	if mode == ModeEnforce && !p.Complete() {
		return previous, fmt.Errorf("%w: %s is %q after %d stories; let it learn until learning.min_stories and learning.min_duration are reached (or review it and set status: complete by hand)",
			ErrNotComplete, path, p.Data.Status, p.Data.Stories)
	}
	if previous == string(mode) {
		return previous, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return previous, fmt.Errorf("%s: %w", path, yamlError(err))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return previous, fmt.Errorf("%s: not a YAML mapping", path)
	}
	top := doc.Content[0]
	set := false
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "mode" {
			top.Content[i+1].SetString(string(mode))
			top.Content[i+1].Style = 0
			set = true
		}
	}
	if !set {
		at := len(top.Content)
		for i := 0; i+1 < len(top.Content); i += 2 {
			if top.Content[i].Value == "status" {
				at = i + 2
			}
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "mode",
			LineComment: "observe | alert | enforce: set by agenttrail profile promote; overrides the configuration"}
		val := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(mode)}
		top.Content = slices.Insert(top.Content, at, key, val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return previous, err
	}
	if err := enc.Close(); err != nil {
		return previous, err
	}
	if _, err := Parse(buf.Bytes()); err != nil {
		return previous, fmt.Errorf("%s: the edited profile does not read back: %w", path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return previous, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return previous, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return previous, err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return previous, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return previous, err
	}
	if err := tmp.Close(); err != nil {
		return previous, err
	}
	return previous, os.Rename(tmp.Name(), path)
}

// WouldBlock is one attempt of a story that enforcing the profile would have blocked.
type WouldBlock struct {
	Time    time.Time
	TraceID string
	Kind    string // connect, sendto, exec
	Target  string // destination (address:port) or executable
	Rule    string // egress_outside_profile or unexpected_executable
	Action  string // refused or killed
	PID     int64
}

// Boundaries checks the declared allowed_destinations of a workload (as in the collector's
// configuration) and returns the entries the kernel cannot enforce.
func Boundaries(allowedDestinations []string) (unenforceable []string, err error) {
	for i, d := range allowedDestinations {
		if _, err := match.ParseDest(d); err != nil {
			return nil, fmt.Errorf("allowed_destinations[%d]: %w", i, err)
		}
	}
	return BuildKernelPolicy(&Data{}, allowedDestinations).Unenforceable, nil
}

// StoryWorkload is the workload key of a story (of its root span's resource, else its first
// resource's), "" for an empty one.
func StoryWorkload(td ptrace.Traces) string {
	var first pcommon.Map
	found := false
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				if !found {
					first, found = rs.Resource().Attributes(), true
				}
				if spans.At(k).ParentSpanID().IsEmpty() {
					return WorkloadOf(rs.Resource().Attributes()).Key
				}
			}
		}
	}
	if !found {
		return ""
	}
	return WorkloadOf(first).Key
}

// WouldBlock evaluates every connect and sendto destination and every execve path of a story
// against what the kernel would enforce for this profile (its destinations and executables
// and the declared allowed_destinations), exactly as the kernel programs decide, and returns
// the attempts that would have been refused or stopped, in time order. since: attempts before
// it are left out.
func (f *File) WouldBlock(td ptrace.Traces, allowedDestinations []string, since time.Time) []WouldBlock {
	kp := BuildKernelPolicy(&f.Prof.Data, allowedDestinations)
	var out []WouldBlock
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		var pid int64
		if v, ok := rs.Resource().Attributes().Get(story.AttrProcessPID); ok {
			pid = v.Int()
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				t := sp.StartTimestamp().AsTime()
				if t.Before(since) {
					continue
				}
				attrs := sp.Attributes()
				wb := WouldBlock{Time: t, TraceID: sp.TraceID().String(), PID: pid}
				switch name := story.SyscallName(sp); name {
				case "connect", "sendto":
					a, err := netip.ParseAddr(story.AttrStr(attrs, story.AttrPeerAddress))
					if err != nil {
						continue // a unix socket: not an inet connection
					}
					port, _ := attrs.Get(story.AttrPeerPort)
					if kp.AllowsDestination(a, int(port.Int())) {
						continue
					}
					wb.Kind, wb.Target, wb.Rule, wb.Action = name, netip.AddrPortFrom(a.Unmap(), uint16(port.Int())).String(), story.RuleEgressOutsideProfile, story.ActionRefused
				case "execve":
					path := story.AttrStr(attrs, story.AttrProcessExecutable)
					if path == "" || kp.AllowsExecutable(path) {
						continue
					}
					wb.Kind, wb.Target, wb.Rule, wb.Action = "exec", path, story.RuleUnexpectedExecutable, story.ActionKilled
				default:
					continue
				}
				out = append(out, wb)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b WouldBlock) int { return a.Time.Compare(b.Time) })
	return out
}
