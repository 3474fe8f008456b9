package aibom

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.yaml.in/yaml/v3"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

// Source names, the agenttrail:observed.source of a workload.
const (
	SourceEvidence = "evidence"
	SourceProfile  = "profile"
	SourceSpans    = "spans"
)

// ArchiveStats says what ReadArchive read.
type ArchiveStats struct {
	Segments int
	Stories  int // story records
}

// ReadArchive adds the spans of every story record of an evidence archive to inv, segment by
// segment, one record line in memory at a time (at most archive.MaxRecordBytes). It does not
// verify the hash chain and signatures: run archive.VerifyDir first (the CLI does). A partial
// last line (the open segment of a live exporter) is left out.
func ReadArchive(dir string, inv *Inventory) (ArchiveStats, error) {
	var st ArchiveStats
	names, err := filepath.Glob(filepath.Join(dir, archive.SegmentsDir, "*.jsonl"))
	if err != nil {
		return st, err
	}
	if len(names) == 0 {
		return st, fmt.Errorf("%s: no segments: not an evidence archive", dir)
	}
	sort.Strings(names)
	var u ptrace.JSONUnmarshaler
	for _, name := range names {
		if err := readSegment(name, func(rec archive.Record) error {
			if rec.Kind != archive.KindStory {
				return nil
			}
			td, err := u.UnmarshalTraces(rec.Payload)
			if err != nil {
				return fmt.Errorf("record %d: %w", rec.Seq, err)
			}
			st.Stories++
			inv.AddTraces(td, SourceEvidence)
			return nil
		}); err != nil {
			return st, fmt.Errorf("%s: %w", name, err)
		}
		st.Segments++
	}
	return st, nil
}

func readSegment(name string, fn func(archive.Record) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > archive.MaxRecordBytes+1 {
			return fmt.Errorf("a line longer than a record can be (%d bytes)", archive.MaxRecordBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil // a partial last line is a record still being written
		}
		if err != nil {
			return err
		}
		rec, perr := archive.ParseLine(bytes.TrimSuffix(line, []byte("\n")))
		if perr != nil {
			return perr
		}
		if err := fn(rec); err != nil {
			return err
		}
		line = line[:0]
	}
}

// profileFacts is what the BOM takes of a profile file of the attackstory processor (its format
// is that processor's README, "Profiles"; the file is read and checked by it first).
type profileFacts struct {
	Workload     map[string]string `yaml:"workload"`
	FirstSeen    yaml.Node         `yaml:"first_seen"`
	Updated      yaml.Node         `yaml:"updated"`
	Tools        []string          `yaml:"tools"`
	Executables  []string          `yaml:"executables"`
	Destinations []struct {
		Address string `yaml:"address"`
		CIDR    string `yaml:"cidr"`
		Port    int    `yaml:"port"`
		Host    string `yaml:"host"`
	} `yaml:"destinations"`
}

// AddProfile adds a learned profile (the YAML of one file of profiles_dir, already checked
// by the attackstory processor's reader) to inv: its workload, its tools, the executables it
// ran and the destinations it connected to. A profile learns no models and no packages: those
// come from spans only.
func (inv *Inventory) AddProfile(data []byte) (string, error) {
	var p profileFacts
	if err := yaml.Unmarshal(data, &p); err != nil {
		return "", err
	}
	res := pcommon.NewMap()
	identity := map[string]string{}
	for k, v := range p.Workload {
		res.PutStr(k, v)
		identity[k] = v
	}
	w, _ := inv.workload(WorkloadKey(res), identity)
	if w == nil {
		return "", errors.New("inventory full")
	}
	o := observer{inv: inv, w: w}
	o.flag(w.Sources, SourceProfile)
	if e := identity["process.executable.path"]; e != "" {
		o.flag(w.Executables, e)
	}
	for _, t := range p.Tools {
		if t, ok := inv.bounded(t); ok {
			// A learned tool ran (the profile learns execute_tool spans).
			if !o.isMCPTool(t) {
				o.addTool(t, "", true)
			}
		}
	}
	for _, e := range p.Executables {
		o.flag(w.Executables, e)
	}
	for _, d := range p.Destinations {
		attrs := pcommon.NewMap()
		addr := d.Address
		if addr == "" {
			addr = d.CIDR // a folded entry: the network, not one address
		}
		attrs.PutStr("network.peer.address", addr)
		attrs.PutInt("network.peer.port", int64(d.Port))
		if d.Host != "" {
			attrs.PutStr("server.address", d.Host)
		}
		o.egress(attrs)
	}
	return w.Key, nil
}
