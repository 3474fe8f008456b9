package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
	"github.com/agenttrail/agenttrail/internal/aibom"
	"github.com/agenttrail/agenttrail/processor/attackstoryprocessor/profile"
)

// toolVersion is the version the BOM names as its tool (the distribution's, builder-config.yaml).
const toolVersion = "0.1.0"

const aibomArgs = "(--evidence DIR | --profiles DIR)... [--out FILE] [--host-files=false] [--timestamp=false]"

// multiFlag is a flag that may be given more than once.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runAIBOM(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail aibom", aibomArgs, stderr)
	var evidence, profiles multiFlag
	fs.Var(&evidence, "evidence", "evidence archive directory to read the stories of (verified first); repeatable")
	fs.Var(&profiles, "profiles", "profiles_dir of the attackstory processor; repeatable")
	out := fs.String("out", "", "write the BOM to FILE instead of standard output")
	hostFiles := fs.Bool("host-files", true, "read Go build info and package versions from the files at the traced processes' paths on this host")
	stamp := fs.Bool("timestamp", true, "put the current time in metadata.timestamp (false: reproducible output)")
	if _, exit, ok := parsePositional(fs, args, stderr, 0, ""); !ok {
		return exit
	}
	switch {
	case len(evidence) == 0 && len(profiles) == 0:
		return usageError(fs, stderr, "--evidence or --profiles is required")
	}
	inv := aibom.New(aibom.Options{})
	var sources []string
	for _, dir := range evidence {
		rep, err := archive.VerifyDir(dir, archive.VerifyOptions{})
		if err != nil {
			fmt.Fprintf(stderr, "agenttrail aibom: the evidence archive %s does not verify: %v\n", dir, err)
			return exitFail
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		st, err := aibom.ReadArchive(dir, inv)
		if err != nil {
			fmt.Fprintf(stderr, "agenttrail aibom: %v\n", err)
			return exitFail
		}
		sources = append(sources, fmt.Sprintf("evidence %s (%d story records)", dir, st.Stories))
	}
	for _, dir := range profiles {
		files, errs := profile.ReadDir(dir)
		for _, e := range errs {
			fmt.Fprintf(stderr, "warning: %v\n", e)
		}
		if len(files) == 0 && len(errs) > 0 {
			return exitFail
		}
		for _, f := range files {
			// Read again, bounded as ReadDir read it (the file may have changed since).
			b, err := profile.ReadFileBytes(f.Path)
			if err == nil {
				_, err = inv.AddProfile(b)
			}
			if err != nil {
				fmt.Fprintf(stderr, "warning: %s: %v\n", f.Path, err)
			}
		}
		sources = append(sources, fmt.Sprintf("profiles %s (%d files)", dir, len(files)))
	}
	if *hostFiles {
		inv.Resolve()
	}
	meta := aibom.Meta{ToolVersion: toolVersion, Sources: sources, Dropped: inv.Dropped}
	if *stamp {
		meta.Time = time.Now()
	}
	var reasons []string
	for r, n := range inv.Dropped {
		reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
	}
	if len(reasons) > 0 {
		sort.Strings(reasons)
		fmt.Fprintf(stderr, "warning: not everything observed fits the BOM's bounds: %s\n", strings.Join(reasons, ", "))
	}
	bom := aibom.BOM(inv.Workloads(), meta)
	w := stdout
	var f *os.File
	var err error
	if *out != "" {
		f, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".tmp-*")
		if err != nil {
			fmt.Fprintf(stderr, "agenttrail aibom: %v\n", err)
			return exitFail
		}
		defer os.Remove(f.Name())
		w = f
	}
	if err := aibom.Encode(w, bom); err != nil {
		fmt.Fprintf(stderr, "agenttrail aibom: %v\n", err)
		return exitFail
	}
	if f != nil {
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "agenttrail aibom: %v\n", err)
			return exitFail
		}
		if err := os.Rename(f.Name(), *out); err != nil {
			fmt.Fprintf(stderr, "agenttrail aibom: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stderr, "wrote the AI-BOM of %d workloads to %s\n", len(inv.Workloads()), *out)
	}
	return exitOK
}
