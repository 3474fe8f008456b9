package profile

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/match"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/internal/story"
)

const (
	profileFormat    = "agenttrail.profile/v1"
	StatusLearning   = "learning"
	StatusComplete   = "complete"
	MaxVolumeSamples = 100
	MaxProfiles      = 1000
)

// Bounds of what a profile file may hold. A profile is learned from what traced (hostile)
// programs did and may be edited by hand, and the processor loads every file of profiles_dir
// at start and whenever one changes: a file over a bound is refused, with an error naming it
// and the key, like any other invalid profile.
const (
	MaxProfileFileSize = 4 << 20 // bytes of a file
	MaxProfileEntries  = 10000   // entries of each list (learning.max_entries may not be more)
	MaxProfileString   = 4096    // bytes of a tool, function, path, pattern, address or host name
	MaxWorkloadAttrs   = 32      // workload attributes
	maxProfileFiles    = 4 * MaxProfiles
)

const profileHeader = `# AgentTrail behavioural profile of one workload, learned by the attackstory processor from the
# stories it observed. Review it, and edit it if you like: the processor reloads a file that
# changed; a file it cannot read is reported (with its line) and left alone while the last good
# version stays in use. Format: processor/attackstoryprocessor/README.md, "Profiles".
`

// Data is the YAML file of a profile.
type Data struct {
	Format       string              `yaml:"format"`
	Workload     map[string]string   `yaml:"workload"`
	Status       string              `yaml:"status"`
	Mode         string              `yaml:"mode,omitempty"`
	Version      int                 `yaml:"version"`
	Stories      int                 `yaml:"stories"`
	FirstSeen    time.Time           `yaml:"first_seen,omitempty"`
	Updated      time.Time           `yaml:"updated,omitempty"`
	Completed    time.Time           `yaml:"completed,omitempty"`
	Tools        []string            `yaml:"tools"`
	Functions    map[string][]string `yaml:"functions,omitempty"`
	Executables  []string            `yaml:"executables"`
	Files        []string            `yaml:"files"`
	Destinations []Dest              `yaml:"destinations"`
	DataVolume   Volume              `yaml:"data_volume"`
	Flows        []Flow              `yaml:"flows,omitempty"`
	Truncated    []string            `yaml:"truncated,omitempty,flow"`
}

// Flow is a flow of sensitive data out of the workload: a tool that read a file of a
// sensitive_paths pattern, then sent data to a destination, with the most bytes seen.
type Flow struct {
	Tool        string `yaml:"tool,omitempty"`
	Data        string `yaml:"data"`
	Destination string `yaml:"destination"`
	BytesMax    int64  `yaml:"bytes_max"`
}

type Dest struct {
	Address string `yaml:"address,omitempty"`
	CIDR    string `yaml:"cidr,omitempty"`
	Port    int    `yaml:"port"`
	Host    string `yaml:"host,omitempty"`
	// BytesMax is the most bytes one story sent to the destination (0: none seen).
	BytesMax int64 `yaml:"bytes_max,omitempty"`
}

type Volume struct {
	ConnectsP95      int64   `yaml:"connects_p95"`
	ConnectsMax      int64   `yaml:"connects_max"`
	BytesSentP95     int64   `yaml:"bytes_sent_p95"`
	BytesSentMax     int64   `yaml:"bytes_sent_max"`
	ConnectsSamples  []int64 `yaml:"connects_samples,flow"`
	BytesSentSamples []int64 `yaml:"bytes_sent_samples,flow"`
}

// Profile is a profile in memory: its data and the indexes the rules use.
type Profile struct {
	ID          WorkloadID
	file        string // base name in profiles_dir
	Data        Data
	Files       []match.Path
	dests       []match.Dest
	dirty       bool
	blocked     bool // the file on disk is invalid: never overwrite it
	volumeStale bool // data_volume p95/max to recompute from the samples
}

// RefreshVolume recomputes the data-volume percentiles from the samples.
func (p *Profile) RefreshVolume() {
	if !p.volumeStale {
		return
	}
	v := &p.Data.DataVolume
	v.ConnectsP95, v.ConnectsMax = P95max(v.ConnectsSamples)
	v.BytesSentP95, v.BytesSentMax = P95max(v.BytesSentSamples)
	p.volumeStale = false
}

func (p *Profile) Complete() bool { return p.Data.Status == StatusComplete }

func (p *Profile) HasTool(name string) bool { return containsSorted(p.Data.Tools, name) }

func (p *Profile) HasExecutable(path string) bool { return containsSorted(p.Data.Executables, path) }

func (p *Profile) KnowsDestination(e story.EgressCall) bool { return p.destIndex(e) >= 0 }

// destIndex is the index of the profile's destination that holds e, -1 for none.
func (p *Profile) destIndex(e story.EgressCall) int {
	for i, d := range p.dests {
		if d.Matches(e.Addr, e.Port, e.Host) {
			return i
		}
		if a := p.Data.Destinations[i].Address; !e.Addr.IsValid() && a != "" && a == e.Address && (d.Port == 0 || d.Port == e.Port) {
			return i
		}
	}
	return -1
}

// DestVolume is the most bytes a story sent to the destination of e while the profile was
// learned; ok is false when the destination is not in the profile or no bytes were seen.
func (p *Profile) DestVolume(e story.EgressCall) (bytesMax int64, ok bool) {
	i := p.destIndex(e)
	if i < 0 || p.Data.Destinations[i].BytesMax <= 0 {
		return 0, false
	}
	return p.Data.Destinations[i].BytesMax, true
}

// learnDestVolume keeps the largest volume a story sent to the destination of e.
func (p *Profile) learnDestVolume(e story.EgressCall, n int64) bool {
	i := p.destIndex(e)
	if i < 0 || n <= p.Data.Destinations[i].BytesMax {
		return false
	}
	p.Data.Destinations[i].BytesMax = n
	return true
}

func (p *Profile) index() {
	p.Files = match.MustCompile(p.Data.Files)
	p.dests = p.dests[:0]
	for _, d := range p.Data.Destinations {
		m := match.Dest{Port: d.Port, Host: strings.ToLower(d.Host)}
		if pfx, err := netip.ParsePrefix(d.CIDR); err == nil {
			m.Prefix = pfx.Masked()
		} else if a, err := netip.ParseAddr(d.Address); err == nil {
			m.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		p.dests = append(p.dests, m)
	}
}

func NewProfile(id WorkloadID, now time.Time) *Profile {
	p := &Profile{ID: id, file: FileName(id.Key)}
	p.Data = Data{Format: profileFormat, Workload: map[string]string{}, Status: StatusLearning,
		Tools: []string{}, Executables: []string{}, Files: []string{}, Destinations: []Dest{}}
	for _, kv := range id.Attrs {
		p.Data.Workload[kv[0]] = kv[1]
	}
	return p
}

// Learn adds what the story did to the profile. complete: the story was not cut short, so
// its data volume is a sample.
func (p *Profile) Learn(f *story.Facts, storyComplete bool, now time.Time, cfg LearningConfig, sensitive []match.Path) {
	d := &p.Data
	if p.Complete() && !cfg.ContinueAfterComplete {
		return
	}
	grew := false
	d.Stories++
	if d.FirstSeen.IsZero() {
		d.FirstSeen = now.UTC().Truncate(time.Second)
	}
	d.Updated = now.UTC().Truncate(time.Second)
	for _, t := range f.Tools {
		grew = p.addBounded(&d.Tools, t.Name, "tools", cfg.MaxEntries) || grew
	}
	for _, role := range story.SortedKeys(f.Functions) {
		if d.Functions == nil {
			d.Functions = map[string][]string{}
		}
		list := d.Functions[role]
		for _, fn := range f.Functions[role] {
			grew = p.addBounded(&list, fn, "functions", cfg.MaxEntries) || grew
		}
		d.Functions[role] = list
	}
	for _, e := range f.Execs {
		if e.Failed == "" && e.Path != "" {
			grew = p.addBounded(&d.Executables, e.Path, "executables", cfg.MaxEntries) || grew
		}
	}
	for _, fa := range f.Files {
		if fa.Failed == "" {
			grew = p.AddFile(match.Generalize(fa.Path), cfg.MaxEntries) || grew
		}
	}
	for _, e := range f.Egress {
		if e.Failed == "" || e.Failed == "EINPROGRESS" {
			grew = p.addDestination(e, cfg.MaxEntries) || grew
		}
	}
	// Volumes per destination: the bytes the story sent to each (of send aggregates where it
	// has them), once per destination.
	seenDest := map[string]bool{}
	for _, e := range f.Egress {
		if e.Failed == "" && !seenDest[e.Dest] {
			seenDest[e.Dest] = true
			grew = p.learnDestVolume(e, f.BytesTo(e)) || grew
		}
	}
	for _, fl := range StoryFlows(f, sensitive) {
		grew = p.addFlow(fl.Flow, fl.Bytes, cfg.MaxEntries) || grew
	}
	if storyComplete {
		v := &d.DataVolume
		v.ConnectsSamples = appendSample(v.ConnectsSamples, int64(f.Connects))
		v.BytesSentSamples = appendSample(v.BytesSentSamples, f.BytesSent)
		v.ConnectsMax = max(v.ConnectsMax, int64(f.Connects))
		v.BytesSentMax = max(v.BytesSentMax, f.BytesSent)
		p.volumeStale = true // the p95s are recomputed when saved or completed
	}
	if grew && p.Complete() {
		d.Version++ // continue_after_complete: a complete profile that changed is a new version
	}
	if grew {
		p.index()
	}
	p.dirty = true
	p.checkComplete(now, cfg)
}

// checkComplete ends the learning window when both its story count and its duration are reached.
func (p *Profile) checkComplete(now time.Time, cfg LearningConfig) bool {
	d := &p.Data
	if p.Complete() || d.Stories < cfg.MinStories || d.FirstSeen.IsZero() || now.Sub(d.FirstSeen) < cfg.MinDuration {
		return false
	}
	p.RefreshVolume()
	d.Status = StatusComplete
	d.Version++
	d.Completed = now.UTC().Truncate(time.Second)
	p.dirty = true
	return true
}

func (p *Profile) addBounded(list *[]string, v, category string, limit int) bool {
	i, found := slices.BinarySearch(*list, v)
	if found {
		return false
	}
	if len(*list) >= limit {
		p.markTruncated(category)
		return false
	}
	*list = slices.Insert(*list, i, v)
	return true
}

func (p *Profile) markTruncated(category string) {
	if !slices.Contains(p.Data.Truncated, category) {
		p.Data.Truncated = append(p.Data.Truncated, category)
		slices.Sort(p.Data.Truncated)
	}
}

// AddFile adds a path pattern unless a pattern already covers it. When the list is full, the
// entries under the pattern's nearest folder (two levels deep at least) that has some are
// folded into "folder/*"; when there is none, the pattern is dropped and the list marked
// truncated.
func (p *Profile) AddFile(pattern string, limit int) bool {
	if _, ok := match.Any(p.Files, pattern); ok {
		return false
	}
	list := &p.Data.Files
	if len(*list) >= limit {
		folded := false
		for dir := path.Dir(pattern); strings.Count(dir, "/") >= 2; dir = path.Dir(dir) {
			kept := (*list)[:0:0]
			for _, f := range *list {
				if !strings.HasPrefix(f, dir+"/") {
					kept = append(kept, f)
				}
			}
			if len(kept) < len(*list) {
				*list = kept
				pattern = dir + "/*"
				folded = true
				break
			}
		}
		if !folded {
			p.markTruncated("files")
			return false
		}
	}
	i, found := slices.BinarySearch(*list, pattern)
	if found {
		return false
	}
	*list = slices.Insert(*list, i, pattern)
	p.Files = match.MustCompile(*list)
	return true
}

func (p *Profile) addDestination(e story.EgressCall, limit int) bool {
	if p.KnowsDestination(e) {
		return false
	}
	d := Dest{Address: e.Address, Port: e.Port, Host: e.Host}
	if e.Addr.IsValid() {
		bits := 24
		if e.Addr.Is6() {
			bits = 64
		}
		d.CIDR = netip.PrefixFrom(e.Addr, bits).Masked().String()
	}
	list := &p.Data.Destinations
	if len(*list) >= limit {
		p.markTruncated("destinations")
		return false
	}
	i, _ := slices.BinarySearchFunc(*list, d, compareDest)
	*list = slices.Insert(*list, i, d)
	p.index()
	return true
}

// FlowOf is the flow of a sensitive read (data: its sensitive_paths pattern) by tool, then
// egress e.
func FlowOf(tool, data string, e story.EgressCall) Flow {
	return Flow{Tool: tool, Data: data, Destination: e.Dest}
}

// KnownFlow reports whether the flow is in the profile with a volume (the bytes sent to its
// destination in the story) at most factor times the most it was seen with (at least
// flowVolumeFloor: a few kilobytes more of a flow that sent almost nothing are not news).
// learned is the profile's entry of the flow, nil when it has none.
func (p *Profile) KnownFlow(fl Flow, n int64, factor float64) (known bool, learned *Flow) {
	i, found := slices.BinarySearchFunc(p.Data.Flows, fl, compareFlow)
	if !found {
		return false, nil
	}
	learned = &p.Data.Flows[i]
	return float64(n) <= factor*float64(max(learned.BytesMax, flowVolumeFloor)), learned
}

// flowVolumeFloor is the least volume a learned flow is judged against.
const flowVolumeFloor = 1000

// addFlow learns a flow, or the larger volume of a known one.
func (p *Profile) addFlow(fl Flow, n int64, limit int) bool {
	list := &p.Data.Flows
	i, found := slices.BinarySearchFunc(*list, fl, compareFlow)
	if found {
		if n > (*list)[i].BytesMax {
			(*list)[i].BytesMax = n
			return true
		}
		return false
	}
	if len(*list) >= limit {
		p.markTruncated("flows")
		return false
	}
	fl.BytesMax = n
	*list = slices.Insert(*list, i, fl)
	return true
}

// compareFlow orders flows by tool, data and destination (not volume: one entry per flow).
func compareFlow(a, b Flow) int {
	return cmp.Or(strings.Compare(a.Tool, b.Tool), strings.Compare(a.Data, b.Data), strings.Compare(a.Destination, b.Destination))
}

func compareDest(a, b Dest) int {
	if c := strings.Compare(a.CIDR, b.CIDR); c != 0 {
		return c
	}
	if c := strings.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return a.Port - b.Port
	}
	return strings.Compare(a.Host, b.Host)
}

func appendSample(s []int64, v int64) []int64 {
	s = append(s, v)
	if len(s) > MaxVolumeSamples {
		s = slices.Delete(s, 0, len(s)-MaxVolumeSamples)
	}
	return s
}

// P95max: the 95th percentile (nearest rank) and the maximum.
func P95max(s []int64) (int64, int64) {
	if len(s) == 0 {
		return 0, 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := (95*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1], sorted[len(sorted)-1]
}

func containsSorted(list []string, v string) bool {
	_, ok := slices.BinarySearch(list, v)
	return ok
}

// FileName: a readable form of the workload key plus a short hash, so that keys that
// read the same after sanitising do not share a file.
func FileName(key string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.TrimSpace(key) {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	name := strings.Trim(b.String(), "_.")
	if len(name) > 80 {
		name = name[:80]
	}
	if name == "" {
		name = "workload"
	}
	sum := sha256.Sum256([]byte(key))
	return name + "-" + hex.EncodeToString(sum[:4]) + ".yaml"
}

// Parse decodes and checks a profile file. Errors name the line.
func Parse(b []byte) (*Profile, error) {
	var d Data
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return nil, yamlError(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, yamlError(err)
	}
	bad := func(msg string, keyPath ...any) error {
		return fmt.Errorf("line %d: %s", lineOf(&doc, keyPath...), msg)
	}
	if d.Format != profileFormat {
		return nil, bad(fmt.Sprintf("format: %q is not %q", d.Format, profileFormat), "format")
	}
	if len(d.Workload) == 0 {
		return nil, bad("workload: at least one attribute is required (e.g. service.name)", "workload")
	}
	if d.Status != StatusLearning && d.Status != StatusComplete {
		return nil, bad(fmt.Sprintf("status: %q is not learning or complete", d.Status), "status")
	}
	if d.Mode != "" {
		if err := ValidMode(Mode(d.Mode), false); err != nil {
			return nil, bad("mode: "+err.Error(), "mode")
		}
	}
	if d.Version < 0 {
		return nil, bad("version: must not be negative", "version")
	}
	if d.Stories < 0 {
		return nil, bad("stories: must not be negative", "stories")
	}
	for i, f := range d.Files {
		if strings.TrimSpace(f) == "" {
			return nil, bad(fmt.Sprintf("files[%d]: empty pattern", i), "files", i)
		}
	}
	for i, dst := range d.Destinations {
		if dst.Port < 0 || dst.Port > 65535 {
			return nil, bad(fmt.Sprintf("destinations[%d].port: %d is not a port (0-65535, 0 for any)", i, dst.Port), "destinations", i, "port")
		}
		if dst.BytesMax < 0 {
			return nil, bad(fmt.Sprintf("destinations[%d].bytes_max: must not be negative", i), "destinations", i, "bytes_max")
		}
		if dst.CIDR != "" {
			if _, err := netip.ParsePrefix(dst.CIDR); err != nil {
				return nil, bad(fmt.Sprintf("destinations[%d].cidr: %v", i, err), "destinations", i, "cidr")
			}
		}
		if dst.Address == "" && dst.CIDR == "" && dst.Host == "" {
			return nil, bad(fmt.Sprintf("destinations[%d]: needs an address, a cidr or a host", i), "destinations", i)
		}
	}
	for i, fl := range d.Flows {
		if fl.Data == "" || fl.Destination == "" {
			return nil, bad(fmt.Sprintf("flows[%d]: needs data and a destination", i), "flows", i)
		}
		if fl.BytesMax < 0 {
			return nil, bad(fmt.Sprintf("flows[%d].bytes_max: must not be negative", i), "flows", i, "bytes_max")
		}
	}
	v := d.DataVolume
	if v.ConnectsP95 < 0 || v.ConnectsMax < 0 || v.BytesSentP95 < 0 || v.BytesSentMax < 0 {
		return nil, bad("data_volume: values must not be negative", "data_volume")
	}
	if err := checkProfileBounds(&d, bad); err != nil {
		return nil, err
	}
	for _, list := range []*[]string{&d.Tools, &d.Executables, &d.Files} {
		if *list == nil {
			*list = []string{}
		}
		slices.Sort(*list)
		*list = slices.Compact(*list)
	}
	for role, fns := range d.Functions {
		slices.Sort(fns) // learning adds to it by binary search
		d.Functions[role] = slices.Compact(fns)
	}
	if d.Destinations == nil {
		d.Destinations = []Dest{}
	}
	slices.SortFunc(d.Destinations, compareDest)
	slices.SortFunc(d.Flows, compareFlow)
	d.Flows = slices.CompactFunc(d.Flows, func(a, b Flow) bool { return compareFlow(a, b) == 0 })
	p := &Profile{ID: WorkloadIDFromAttrs(d.Workload), Data: d}
	p.index()
	return p, nil
}

// checkProfileBounds checks a decoded profile against the bounds of what a file may hold; bad
// makes the error, naming the key and its line.
func checkProfileBounds(d *Data, bad func(msg string, keyPath ...any) error) error {
	str := func(s string, keyPath ...any) error {
		if len(s) > MaxProfileString {
			return bad(fmt.Sprintf("%s: %d bytes, more than %d", keyName(keyPath), len(s), MaxProfileString), keyPath...)
		}
		return nil
	}
	list := func(l []string, keyPath ...any) error {
		if len(l) > MaxProfileEntries {
			return bad(fmt.Sprintf("%s: %d entries, more than %d", keyName(keyPath), len(l), MaxProfileEntries), keyPath...)
		}
		for i, s := range l {
			if err := str(s, append(slices.Clip(keyPath), i)...); err != nil {
				return err
			}
		}
		return nil
	}
	if len(d.Workload) > MaxWorkloadAttrs {
		return bad(fmt.Sprintf("workload: %d attributes, more than %d", len(d.Workload), MaxWorkloadAttrs), "workload")
	}
	for _, k := range story.SortedKeys(d.Workload) {
		if err := cmp.Or(str(k, "workload"), str(d.Workload[k], "workload", k)); err != nil {
			return err
		}
	}
	if d.Version > math.MaxInt32 {
		return bad(fmt.Sprintf("version: at most %d", math.MaxInt32), "version")
	}
	if d.Stories > math.MaxInt32 {
		return bad(fmt.Sprintf("stories: at most %d", math.MaxInt32), "stories")
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"tools", d.Tools}, {"executables", d.Executables}, {"files", d.Files}} {
		if err := list(l.list, l.key); err != nil {
			return err
		}
	}
	if len(d.Functions) > MaxProfileEntries {
		return bad(fmt.Sprintf("functions: %d roles, more than %d", len(d.Functions), MaxProfileEntries), "functions")
	}
	for _, role := range story.SortedKeys(d.Functions) {
		if err := cmp.Or(str(role, "functions"), list(d.Functions[role], "functions", role)); err != nil {
			return err
		}
	}
	if len(d.Destinations) > MaxProfileEntries {
		return bad(fmt.Sprintf("destinations: %d entries, more than %d", len(d.Destinations), MaxProfileEntries), "destinations")
	}
	for i, dst := range d.Destinations {
		err := cmp.Or(str(dst.Address, "destinations", i, "address"), str(dst.CIDR, "destinations", i, "cidr"), str(dst.Host, "destinations", i, "host"))
		if err != nil {
			return err
		}
	}
	if len(d.Flows) > MaxProfileEntries {
		return bad(fmt.Sprintf("flows: %d entries, more than %d", len(d.Flows), MaxProfileEntries), "flows")
	}
	for i, fl := range d.Flows {
		err := cmp.Or(str(fl.Tool, "flows", i, "tool"), str(fl.Data, "flows", i, "data"), str(fl.Destination, "flows", i, "destination"))
		if err != nil {
			return err
		}
	}
	v := d.DataVolume
	for _, s := range []struct {
		key     string
		samples []int64
	}{{"connects_samples", v.ConnectsSamples}, {"bytes_sent_samples", v.BytesSentSamples}} {
		if len(s.samples) > MaxVolumeSamples {
			return bad(fmt.Sprintf("data_volume.%s: %d samples, more than %d", s.key, len(s.samples), MaxVolumeSamples), "data_volume", s.key)
		}
		if slices.ContainsFunc(s.samples, func(n int64) bool { return n < 0 }) {
			return bad("data_volume."+s.key+": values must not be negative", "data_volume", s.key)
		}
	}
	if len(d.Truncated) > 16 {
		return bad(fmt.Sprintf("truncated: %d entries, more than 16", len(d.Truncated)), "truncated")
	}
	for i, c := range d.Truncated {
		if len(c) > 64 {
			return bad(fmt.Sprintf("truncated[%d]: %d bytes, more than 64", i, len(c)), "truncated", i)
		}
	}
	return nil
}

// keyName writes a key path as the YAML reads: files[3], functions.tool[0].
func keyName(keyPath []any) string {
	var b strings.Builder
	for _, k := range keyPath {
		switch k := k.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		}
	}
	return b.String()
}

// readFile reads a profile file: a regular file (a FIFO would block the reader) of at
// most maxProfileFileSize bytes, refused before it is read whole. Errors name the file.
func ReadFileBytes(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, info.Mode().Type())
	}
	if info.Size() > MaxProfileFileSize {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, info.Size(), MaxProfileFileSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxProfileFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxProfileFileSize {
		return nil, fmt.Errorf("%s: more than %d bytes", path, MaxProfileFileSize)
	}
	return b, nil
}

var internalType = regexp.MustCompile(` in type [\w.]+`)

// yamlError turns a YAML decoding error into "line N: problem" (it already names the line).
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(internalType.ReplaceAllString(strings.Join(te.Errors, "; "), ""))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if !strings.HasPrefix(msg, "line ") {
		msg = "line 1: " + msg
	}
	return errors.New(msg)
}

// lineOf finds the line of a key path (map keys and list indexes) in a YAML document; it
// falls back to the deepest node found.
func lineOf(doc *yaml.Node, keyPath ...any) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, k := range keyPath {
		switch k := k.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

func Marshal(d *Data) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(profileHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fileState is what the store last saw of a profile file, to tell hand edits from its writes.
type fileState struct {
	mod  time.Time
	size int64
	bad  bool
}

// Store holds the profiles, loads them from profiles_dir and saves them there. It is
// used by the emitter only (never concurrently).
type Store struct {
	dir      string
	cfg      LearningConfig
	interval time.Duration
	logger   *zap.Logger

	ByKey     map[string]*Profile
	files     map[string]fileState
	lastCheck time.Time
	full      bool // maxProfiles reached (logged once)
	// tooManyFiles: profiles_dir holds more than maxProfileFiles profile files (logged once).
	tooManyFiles bool
}

// NewStore: dir is profiles_dir ("" keeps profiles in memory), interval
// profiles_save_interval.
func NewStore(dir string, interval time.Duration, learning LearningConfig, logger *zap.Logger) *Store {
	return &Store{
		dir: dir, cfg: learning, interval: interval, logger: logger,
		ByKey: map[string]*Profile{}, files: map[string]fileState{},
	}
}

// Start creates profiles_dir if needed and loads every profile in it.
func (s *Store) Start(now time.Time) error {
	s.lastCheck = now
	if s.dir == "" {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("profiles_dir: %w", err)
	}
	if _, err := os.ReadDir(s.dir); err != nil {
		return fmt.Errorf("profiles_dir: %w", err)
	}
	s.scan(true)
	return nil
}

// Get returns the workload's profile, made on first use; nil when maxProfiles is reached.
// Find returns the profile of a workload, or nil when it has none (it never creates one).
func (s *Store) Find(id WorkloadID) *Profile { return s.ByKey[id.Key] }

func (s *Store) Get(id WorkloadID, now time.Time) *Profile {
	if p := s.ByKey[id.Key]; p != nil {
		return p
	}
	if len(s.ByKey) >= MaxProfiles {
		if !s.full {
			s.full = true
			s.logger.Warn("Too many workloads: stories of further workloads are not profiled", zap.Int("max_profiles", MaxProfiles), zap.String("workload", id.Key))
		}
		return nil
	}
	p := NewProfile(id, now)
	if st, ok := s.files[p.file]; ok && st.bad {
		p.blocked = true
	}
	s.ByKey[id.Key] = p
	return p
}

// Tick re-reads files edited by hand, ends learning windows whose duration has passed, and
// saves the profiles that changed; at most once per profiles_save_interval unless force. It
// reports whether it ran.
func (s *Store) Tick(now time.Time, force bool) bool {
	if !force && now.Sub(s.lastCheck) < s.interval {
		return false
	}
	s.lastCheck = now
	if s.dir != "" {
		s.scan(false)
	}
	for _, key := range story.SortedKeys(s.ByKey) {
		p := s.ByKey[key]
		if p.checkComplete(now, s.cfg) {
			s.logger.Info("Profile complete", zap.String("workload", p.ID.Key), zap.Int("version", p.Data.Version), zap.Int("stories", p.Data.Stories))
		}
		if p.dirty && s.dir != "" && !p.blocked {
			if err := s.save(p); err != nil {
				s.logger.Error("Cannot save profile", zap.String("file", filepath.Join(s.dir, p.file)), zap.Error(err))
				continue
			}
		}
		if s.dir == "" || !p.blocked {
			p.dirty = false
		}
	}
	return true
}

// save writes the profile atomically: a temporary file in the same folder, synced, renamed.
func (s *Store) save(p *Profile) error {
	p.RefreshVolume()
	b, err := Marshal(&p.Data)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, "."+p.file+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	target := filepath.Join(s.dir, p.file)
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	if info, err := os.Stat(target); err == nil {
		s.files[p.file] = fileState{mod: info.ModTime(), size: info.Size()}
	}
	return nil
}

// scan loads new profile files and re-reads the ones that changed since the store last saw them.
func (s *Store) scan(initial bool) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.logger.Error("Cannot read profiles_dir", zap.String("profiles_dir", s.dir), zap.Error(err))
		return
	}
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		if files++; files > maxProfileFiles {
			if !s.tooManyFiles {
				s.tooManyFiles = true
				s.logger.Error("Too many profile files: the ones after are not read", zap.String("profiles_dir", s.dir), zap.Int("max_files", maxProfileFiles), zap.String("first_not_read", name))
			}
			break
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := s.files[name]; ok && st.mod.Equal(info.ModTime()) && st.size == info.Size() {
			continue
		}
		full := filepath.Join(s.dir, name)
		// A file that cannot be read (too large, not a regular file) is invalid as one that
		// does not parse: reported once, never overwritten, an earlier version kept in use.
		b, err := ReadFileBytes(full)
		var p *Profile
		if err == nil {
			if p, err = Parse(b); err != nil {
				err = fmt.Errorf("%s: %w", full, err)
			}
		}
		if err != nil {
			s.files[name] = fileState{mod: info.ModTime(), size: info.Size(), bad: true}
			kept := "no earlier version of it was loaded"
			for _, q := range s.ByKey {
				if q.file == name {
					q.blocked = true
					kept = "the last good version (" + strconv.Itoa(q.Data.Version) + ", " + q.Data.Status + ") stays in use"
				}
			}
			s.logger.Error("Invalid profile file: fix it; until then "+kept+" and the file is not overwritten",
				zap.String("file", full), zap.Error(err))
			continue
		}
		s.files[name] = fileState{mod: info.ModTime(), size: info.Size()}
		p.file = name
		if s.ByKey[p.ID.Key] == nil && len(s.ByKey) >= MaxProfiles {
			s.logger.Error("Too many profiles: this one is not loaded", zap.String("file", full), zap.String("workload", p.ID.Key), zap.Int("max_profiles", MaxProfiles))
			continue
		}
		if old := s.ByKey[p.ID.Key]; old != nil && old.file != name && !initial {
			s.logger.Warn("Two profile files describe the same workload; using the newer", zap.String("workload", p.ID.Key), zap.String("file", full), zap.String("other", filepath.Join(s.dir, old.file)))
		}
		for _, q := range s.ByKey {
			if q.file == name && q.ID.Key != p.ID.Key {
				delete(s.ByKey, q.ID.Key) // the file now describes another workload
			}
		}
		s.ByKey[p.ID.Key] = p
		if initial {
			s.logger.Info("Loaded profile", zap.String("file", full), zap.String("workload", p.ID.Key), zap.String("status", p.Data.Status), zap.Int("version", p.Data.Version))
		} else {
			s.logger.Info("Profile changed on disk: reloaded", zap.String("file", full), zap.String("workload", p.ID.Key), zap.String("status", p.Data.Status), zap.Int("version", p.Data.Version))
		}
	}
}

// StoryFlow is a flow of a story: a sensitive read, then egress, with the bytes sent to its
// destination in the story.
type StoryFlow struct {
	Flow  Flow
	Bytes int64
	read  *story.FileAccess
	dest  *story.EgressCall
}

// StoryFlows are the story's flows of sensitive data: each successful read of a sensitive file
// followed by a successful (or in progress) connect or sendto, once per tool, pattern and
// destination. The tool is the egress's (else the read's).
func StoryFlows(f *story.Facts, sensitive []match.Path) []StoryFlow {
	var out []StoryFlow
	seen := map[Flow]bool{}
	for i := range f.Files {
		fa := &f.Files[i]
		if !fa.Read || fa.Failed != "" {
			continue
		}
		pattern, ok := fa.SensitivePattern(sensitive)
		if !ok {
			continue
		}
		for j := range f.Egress {
			e := &f.Egress[j]
			if e.Seq < fa.Seq || e.Failed != "" {
				continue
			}
			fl := FlowOf(f.FlowTool(fa, e), pattern, *e)
			if seen[fl] {
				continue
			}
			seen[fl] = true
			out = append(out, StoryFlow{Flow: fl, Bytes: f.BytesTo(*e), read: fa, dest: e})
		}
	}
	return out
}
