package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.yaml.in/yaml/v3"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// defaultProfilesDir is the distribution's profiles_dir.
const defaultProfilesDir = "/var/lib/agenttrail/profiles"

func profileCommands() []command {
	return []command{
		{name: "list", args: "[--dir PROFILES]", summary: "list the learned profiles: workload, status, version, mode", run: runProfileList},
		{name: "show", args: "WORKLOAD [--dir PROFILES]", summary: "print a workload's learned profile for review (stable order, diffable)", run: runProfileShow},
		{name: "promote", args: "WORKLOAD --mode enforce|alert|observe [--dir PROFILES] [--dry-run --evidence DIR [--since 24h] [--config FILE] [--allow DEST]...]",
			summary: "switch a workload's mode (writes mode: into its profile); --dry-run lists what enforcing would have blocked and changes nothing", run: runProfilePromote},
	}
}

func runProfile(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agenttrail profile: missing subcommand")
		printTable(stderr, "agenttrail profile", profileCommands())
		return exitUsage
	}
	return dispatch("agenttrail profile", profileCommands(), args, stdout, stderr)
}

// dirFlag is --dir, defaulting to $AGENTTRAIL_PROFILES_DIR, then the distribution's folder.
func dirFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("AGENTTRAIL_PROFILES_DIR")
	if def == "" {
		def = defaultProfilesDir
	}
	return fs.String("dir", def, "profiles_dir of the attackstory processor (default $AGENTTRAIL_PROFILES_DIR or "+defaultProfilesDir+")")
}

// findProfile finds the one profile of dir that name designates.
func findProfile(dir, name string) (*profile.File, error) {
	if strings.ContainsRune(name, os.PathSeparator) {
		if f, err := profile.ReadFile(name); err == nil {
			return f, nil
		}
	}
	files, errs := profile.ReadDir(dir)
	var found []*profile.File
	for _, f := range files {
		if f.Matches(name) {
			found = append(found, f)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var names []string
		for _, f := range found {
			names = append(names, fmt.Sprintf("%s (%s)", filepath.Base(f.Path), f.Key()))
		}
		return nil, fmt.Errorf("%q matches %d profiles in %s: %s; name one by its file", name, len(found), dir, strings.Join(names, ", "))
	}
	msg := fmt.Sprintf("no profile of %q in %s", name, dir)
	if len(files) > 0 {
		var keys []string
		for _, f := range files {
			keys = append(keys, f.Key())
		}
		msg += " (workloads: " + strings.Join(keys, "; ") + ")"
	}
	if len(errs) > 0 {
		msg += fmt.Sprintf("; %d file(s) could not be read: %v", len(errs), errors.Join(errs...))
	}
	return nil, errors.New(msg)
}

func runProfileList(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail profile list", "[--dir PROFILES]", stderr)
	dir := dirFlag(fs)
	if _, exit, ok := parsePositional(fs, args, stderr, 0, ""); !ok {
		return exit
	}
	files, errs := profile.ReadDir(*dir)
	for _, e := range errs {
		fmt.Fprintf(stderr, "warning: %v\n", e)
	}
	if len(files) == 0 && len(errs) > 0 {
		return exitFail
	}
	for _, f := range files {
		mode := f.Mode()
		if mode == "" {
			mode = "(config)"
		}
		fmt.Fprintf(stdout, "%-44s %-9s v%-3d %-9s %s\n", filepath.Base(f.Path), f.Status(), f.Version(), mode, f.Key())
	}
	return exitOK
}

func runProfileShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail profile show", "WORKLOAD [--dir PROFILES]", stderr)
	dir := dirFlag(fs)
	pos, exit, ok := parsePositional(fs, args, stderr, 1, "want exactly one workload (its file name, key or a workload attribute value such as its service.name)")
	if !ok {
		return exit
	}
	f, err := findProfile(*dir, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile show: %v\n", err)
		return exitFail
	}
	f.WriteText(stdout)
	return exitOK
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runProfilePromote(args []string, stdout, stderr io.Writer) int {
	usage := "WORKLOAD --mode enforce|alert|observe [--dir PROFILES] [--dry-run --evidence DIR [--since 24h] [--config FILE] [--allow DEST]...]"
	fs := newFlagSet("agenttrail profile promote", usage, stderr)
	dir := dirFlag(fs)
	mode := fs.String("mode", "", "the workload's new mode: enforce, alert or observe")
	dryRun := fs.Bool("dry-run", false, "change nothing: list what enforcing the profile would have blocked in the archived stories")
	evidence := fs.String("evidence", "", "evidence archive directory (the evidence exporter's directory), for --dry-run")
	since := fs.Duration("since", 24*time.Hour, "with --dry-run: the stories of this last period")
	config := fs.String("config", "", "with --dry-run: the collector configuration, for the workload's declared allowed_destinations")
	var allow stringList
	fs.Var(&allow, "allow", "with --dry-run: a declared allowed destination (IP, IP:port, CIDR, CIDR:port, *:port); repeatable")
	pos, exit, ok := parsePositional(fs, args, stderr, 1, "want exactly one workload")
	if !ok {
		return exit
	}
	switch {
	case *mode == "":
		return usageError(fs, stderr, "--mode is required")
	case !*dryRun && (*evidence != "" || *config != "" || len(allow) > 0):
		return usageError(fs, stderr, "--evidence, --config and --allow go with --dry-run")
	case *dryRun && *evidence == "":
		return usageError(fs, stderr, "--dry-run needs --evidence DIR")
	case *since <= 0:
		return usageError(fs, stderr, "--since must be positive")
	}
	m, err := profile.ParseMode(*mode)
	if err != nil {
		return usageError(fs, stderr, "--mode: %v", err)
	}
	f, err := findProfile(*dir, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile promote: %v\n", err)
		return exitFail
	}
	if *dryRun {
		return dryRunPromote(f, m, *evidence, *since, *config, allow, stdout, stderr)
	}
	prev, err := profile.SetMode(f.Path, m)
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile promote: %v\n", err)
		return exitFail
	}
	if prev == string(m) {
		fmt.Fprintf(stdout, "%s is already in mode %s (%s); nothing changed\n", f.Key(), m, f.Path)
		return exitOK
	}
	if prev == "" {
		prev = "the configured mode"
	}
	fmt.Fprintf(stdout, "%s: mode %s (was %s), profile version %d, written to %s\n", f.Key(), m, prev, f.Version(), f.Path)
	fmt.Fprintln(stdout, "the collector picks it up at its next profile reload (profiles_save_interval)")
	return exitOK
}

func dryRunPromote(f *profile.File, m profile.Mode, evidenceDir string, since time.Duration, config string, allow []string, stdout, stderr io.Writer) int {
	if m != profile.ModeEnforce {
		fmt.Fprintf(stdout, "dry run: mode %s blocks nothing; nothing was changed\n", m)
		return exitOK
	}
	declared := append([]string(nil), allow...)
	if config != "" {
		d, note, err := declaredDestinations(config, f.Workload())
		if err != nil {
			fmt.Fprintf(stderr, "agenttrail profile promote: --config: %v\n", err)
			return exitFail
		}
		if note != "" {
			fmt.Fprintf(stdout, "note: %s\n", note)
		}
		declared = append(declared, d...)
	}
	unenforceable, err := profile.Boundaries(declared)
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile promote: %v\n", err)
		return exitFail
	}
	rep, err := archive.VerifyDir(evidenceDir, archive.VerifyOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile promote: the evidence archive does not verify: %v\n", err)
		return exitFail
	}
	from := time.Now().Add(-since)
	stories, blocks, err := scanArchive(evidenceDir, f, declared, from)
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail profile promote: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "dry run: enforcing %s (profile version %d, %s) on its stories since %s in %s (%d records)\n",
		f.Key(), f.Version(), filepath.Base(f.Path), from.UTC().Format(time.RFC3339), evidenceDir, rep.Records)
	if len(declared) > 0 {
		fmt.Fprintf(stdout, "declared allowed_destinations: %s\n", strings.Join(declared, ", "))
	}
	for _, u := range unenforceable {
		fmt.Fprintf(stdout, "note: %s cannot be enforced by address\n", u)
	}
	if f.Status() != "complete" {
		fmt.Fprintf(stdout, "note: the profile is %q: promotion to enforce will be refused until it is complete\n", f.Status())
	}
	traces := map[string]bool{}
	if len(blocks) > 0 {
		fmt.Fprintf(stdout, "%-24s  %-32s  %-7s  %-28s  %s\n", "TIME", "TRACE", "KIND", "DESTINATION/EXECUTABLE", "RULE")
	}
	for _, b := range blocks {
		traces[b.TraceID] = true
		fmt.Fprintf(stdout, "%-24s  %-32s  %-7s  %-28s  %s (%s)\n", b.Time.UTC().Format("2006-01-02T15:04:05.000Z"), b.TraceID, b.Kind, b.Target, b.Rule, b.Action)
	}
	if len(blocks) == 0 {
		fmt.Fprintf(stdout, "nothing would have been blocked in %d stories; nothing was changed\n", stories)
	} else {
		fmt.Fprintf(stdout, "%d attempts would have been blocked in %d of %d stories; nothing was changed\n", len(blocks), len(traces), stories)
	}
	return exitOK
}

// scanArchive evaluates every story record of the workload in the archive.
func scanArchive(dir string, f *profile.File, declared []string, from time.Time) (stories int, blocks []profile.WouldBlock, err error) {
	segDir := filepath.Join(dir, archive.SegmentsDir)
	names, err := filepath.Glob(filepath.Join(segDir, "*.jsonl"))
	if err != nil {
		return 0, nil, err
	}
	sort.Strings(names)
	seen := map[string]bool{}
	var u ptrace.JSONUnmarshaler
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return 0, nil, err
		}
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break // the partial tail of the open segment
			}
			line := data[:i]
			data = data[i+1:]
			rec, err := archive.ParseLine(line)
			if err != nil {
				return 0, nil, fmt.Errorf("%s: %w", name, err)
			}
			if rec.Kind != archive.KindStory {
				continue
			}
			td, err := u.UnmarshalTraces(rec.Payload)
			if err != nil {
				return 0, nil, fmt.Errorf("%s: record %d: %w", name, rec.Seq, err)
			}
			if profile.StoryWorkload(td) != f.Key() {
				continue
			}
			bs := f.WouldBlock(td, declared, from)
			if !seen[rec.TraceID] && storyEnds(td, from) {
				seen[rec.TraceID] = true
				stories++
			}
			blocks = append(blocks, bs...)
		}
	}
	sort.SliceStable(blocks, func(i, j int) bool { return blocks[i].Time.Before(blocks[j].Time) })
	return stories, blocks, nil
}

// storyEnds reports whether a span of td ends after from.
func storyEnds(td ptrace.Traces, from time.Time) bool {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				if !spans.At(k).EndTimestamp().AsTime().Before(from) {
					return true
				}
			}
		}
	}
	return false
}

var envRef = regexp.MustCompile(`\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// declaredDestinations reads the allowed_destinations of the first workloads entry of an
// attackstory processor of a collector configuration whose match fits the profile's workload
// attributes (as the processor picks it). ${env:NAME:-default} references are expanded.
func declaredDestinations(path string, workload map[string]string) ([]string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	expanded := envRef.ReplaceAllStringFunc(string(b), func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := os.LookupEnv(m[1]); ok && v != "" {
			return v
		}
		return m[2]
	})
	var doc struct {
		Processors map[string]struct {
			Workloads []struct {
				Match               map[string]string `yaml:"match"`
				AllowedDestinations []string          `yaml:"allowed_destinations"`
			} `yaml:"workloads"`
		} `yaml:"processors"`
	}
	if err := yaml.Unmarshal([]byte(expanded), &doc); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	var names []string
	for name := range doc.Processors {
		if name == "attackstory" || strings.HasPrefix(name, "attackstory/") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%s has no attackstory processor", path)
	}
	note := ""
	if len(names) > 1 {
		note = fmt.Sprintf("%s has %d attackstory processors; using %s", path, len(names), names[0])
	}
	for i, w := range doc.Processors[names[0]].Workloads {
		ok := len(w.Match) > 0
		for k, v := range w.Match {
			if workload[k] != v {
				ok = false
			}
		}
		if ok {
			if note != "" {
				note += "; "
			}
			return w.AllowedDestinations, note + fmt.Sprintf("declared boundaries of %s workloads[%d]", names[0], i), nil
		}
	}
	if note != "" {
		note += "; "
	}
	return nil, note + "no workloads entry of the configuration matches the profile's workload attributes (entries matching on other attributes cannot be told here): no declared allowed_destinations", nil
}
