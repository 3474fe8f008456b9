package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/agenttrail/agenttrail/exporter/evidenceexporter/archive"
)

func evidenceCommands() []command {
	return []command{
		{name: "verify", args: "DIR [--public-key HEX|FILE]", summary: "check every record, link, manifest and retention gap", run: runVerify},
		{name: "export", args: "--dir DIR --trace ID --out OUTDIR", summary: "write story.json, findings.json and proof.json for one trace", run: runExport},
		{name: "verify-bundle", args: "OUTDIR [--public-key HEX|FILE]", summary: "check an exported bundle offline", run: runVerifyBundle},
		{name: "keygen", args: "--out FILE", summary: "create an Ed25519 signing key (mode 0600) and print its public key", run: runKeygen},
	}
}

func runEvidence(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agenttrail evidence: missing subcommand")
		printTable(stderr, "agenttrail evidence", evidenceCommands())
		return exitUsage
	}
	return dispatch("agenttrail evidence", evidenceCommands(), args, stdout, stderr)
}

// publicKeyFlag parses --public-key lazily so that a bad value is a usage error.
func publicKeyFlag(s string) (ed25519.PublicKey, error) {
	if s == "" {
		return nil, nil
	}
	return archive.ParsePublicKey(s)
}

const pinKeyUsage = "pin the signing key: 64 hex digits, or a file with hex or a PEM PUBLIC KEY"

// dirAndKey parses the arguments of a command that takes one directory (what it is, for the
// usage error) and --public-key (pk, declared on fs). When ok is false the command ends with
// exit (help, or a usage error already printed).
func dirAndKey(fs *flag.FlagSet, pk *string, args []string, what string, stderr io.Writer) (dir string, key ed25519.PublicKey, exit int, ok bool) {
	pos, exit, ok := parsePositional(fs, args, stderr, 1, "want exactly one "+what)
	if !ok {
		return "", nil, exit, false
	}
	key, err := publicKeyFlag(*pk)
	if err != nil {
		return "", nil, usageError(fs, stderr, "--public-key: %v", err), false
	}
	return pos[0], key, 0, true
}

func runVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail evidence verify", "DIR [--public-key HEX|FILE]", stderr)
	pk := fs.String("public-key", "", pinKeyUsage)
	dir, key, exit, ok := dirAndKey(fs, pk, args, "archive directory", stderr)
	if !ok {
		return exit
	}
	rep, err := archive.VerifyDir(dir, archive.VerifyOptions{PublicKey: key})
	for _, w := range rep.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	var verr *archive.VerifyError
	switch {
	case errors.As(err, &verr):
		fmt.Fprintf(stdout, "FAIL: %s\n", verr)
		return exitFail
	case err != nil:
		fmt.Fprintf(stderr, "agenttrail evidence verify: %v\n", err)
		return exitFail
	}
	printReport(stdout, rep, key)
	fmt.Fprintln(stdout, "OK")
	return exitOK
}

func printReport(w io.Writer, rep archive.Report, pinned ed25519.PublicKey) {
	open := ""
	if rep.OpenSegment != "" {
		open = "open: " + rep.OpenSegment
	}
	fmt.Fprintf(w, "segments:   %d (%s)\n", rep.Segments, joinNonEmpty(", ", fmt.Sprintf("%d sealed", rep.ClosedSegments), open))
	if rep.Records == 0 {
		fmt.Fprintln(w, "records:    0")
	} else {
		fmt.Fprintf(w, "records:    %d (seq %d..%d)\n", rep.Records, rep.FirstSeq, rep.LastSeq)
	}
	fmt.Fprintf(w, "retention:  %d records, %d segments removed", rep.RetentionRecords, len(rep.RemovedSegments))
	if len(rep.RemovedSegments) > 0 {
		fmt.Fprintf(w, " (%s .. %s)", rep.RemovedSegments[0], rep.RemovedSegments[len(rep.RemovedSegments)-1])
	}
	fmt.Fprintln(w)
	for _, p := range rep.PendingRemovals {
		fmt.Fprintf(w, "retention:  removal of %s was recorded but the segment is still present (interrupted removal)\n", p)
	}
	keys := strings.Join(rep.PublicKeys, ", ")
	if keys == "" {
		keys = "(no sealed segment)"
	}
	if pinned != nil {
		keys += " (pinned " + hex.EncodeToString(pinned) + ")"
	}
	fmt.Fprintf(w, "public key: %s\n", keys)
	if t := rep.PartialTail; t != nil {
		fmt.Fprintf(w, "partial:    %s: %d bytes at offset %d after the last whole record (%s); tolerated in the open segment, cut off when the exporter next starts\n",
			t.Segment, t.Bytes, t.Offset, t.Reason)
	}
	fmt.Fprintf(w, "last hash:  %s\n", rep.LastHash)
}

func runExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail evidence export", "--dir DIR --trace ID --out OUTDIR [--public-key HEX|FILE]", stderr)
	dir := fs.String("dir", "", "archive directory")
	trace := fs.String("trace", "", "trace id (32 hex digits)")
	out := fs.String("out", "", "bundle directory to write")
	pk := fs.String("public-key", "", "pin the signing key while verifying the archive")
	if _, exit, ok := parsePositional(fs, args, stderr, 0, ""); !ok {
		return exit
	}
	switch {
	case *dir == "" || *trace == "" || *out == "":
		return usageError(fs, stderr, "--dir, --trace and --out are required")
	}
	if _, err := archive.NormalizeTraceID(*trace); err != nil {
		return usageError(fs, stderr, "--trace: %v", err)
	}
	key, err := publicKeyFlag(*pk)
	if err != nil {
		return usageError(fs, stderr, "--public-key: %v", err)
	}
	rep, err := archive.ExportTrace(*dir, *trace, *out, archive.ExportOptions{PublicKey: key})
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail evidence export: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "exported trace %s: %d story records, %d findings from %s to %s\n",
		rep.TraceID, rep.Stories, rep.Findings, strings.Join(rep.Segments, ", "), *out)
	fmt.Fprintf(stdout, "report: %s (a rendering of the signed story.json, findings.json and proof.json)\n",
		filepath.Join(*out, "report.html"))
	if len(rep.Unsigned) > 0 {
		fmt.Fprintf(stdout, "note: %s still open: those records are chained but not yet signed\n", strings.Join(rep.Unsigned, ", "))
	}
	return exitOK
}

func runVerifyBundle(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail evidence verify-bundle", "OUTDIR [--public-key HEX|FILE] [--allow-unsigned]", stderr)
	pk := fs.String("public-key", "", pinKeyUsage)
	allowUnsigned := fs.Bool("allow-unsigned", false, "accept records of segments that were still open (chained, not signed)")
	dir, key, exit, ok := dirAndKey(fs, pk, args, "bundle directory", stderr)
	if !ok {
		return exit
	}
	rep, err := archive.VerifyBundle(dir, archive.BundleOptions{PublicKey: key, AllowUnsigned: *allowUnsigned})
	if err != nil {
		fmt.Fprintf(stdout, "FAIL: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "trace:      %s\n", rep.TraceID)
	fmt.Fprintf(stdout, "records:    %d story, %d findings in %s\n", rep.Stories, rep.Findings, strings.Join(rep.Segments, ", "))
	fmt.Fprintf(stdout, "public key: %s\n", strings.Join(rep.PublicKeys, ", "))
	if len(rep.Unsigned) > 0 {
		fmt.Fprintf(stdout, "unsigned:   %s (accepted by --allow-unsigned)\n", strings.Join(rep.Unsigned, ", "))
	}
	fmt.Fprintf(stdout, "report:     %s\n", rep.Report)
	fmt.Fprintln(stdout, "OK")
	return exitOK
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("agenttrail evidence keygen", "--out FILE", stderr)
	out := fs.String("out", "", "private key file to create (must not exist)")
	if _, exit, ok := parsePositional(fs, args, stderr, 0, ""); !ok {
		return exit
	}
	switch {
	case *out == "":
		return usageError(fs, stderr, "--out is required")
	}
	pub, err := archive.GenerateSigningKey(*out)
	if err != nil {
		fmt.Fprintf(stderr, "agenttrail evidence keygen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stderr, "wrote Ed25519 signing key to %s (mode 0600); public key (hex, and PEM):\n", *out)
	fmt.Fprintln(stdout, hex.EncodeToString(pub))
	fmt.Fprint(stderr, string(archive.PublicKeyPEM(pub)))
	return exitOK
}
