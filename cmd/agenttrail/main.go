// Command agenttrail is AgentTrail's small operator and auditor CLI.
//
//	agenttrail help
//	agenttrail evidence verify DIR [--public-key HEX|FILE]
//	agenttrail evidence export --dir DIR --trace ID --out OUTDIR [--public-key HEX|FILE]
//	agenttrail evidence verify-bundle OUTDIR [--public-key HEX|FILE] [--allow-unsigned]
//	agenttrail evidence keygen --out FILE
//	agenttrail profile list [--dir PROFILES]
//	agenttrail profile show WORKLOAD [--dir PROFILES]
//	agenttrail profile promote WORKLOAD --mode enforce|alert|observe [--dir PROFILES]
//	agenttrail profile promote WORKLOAD --mode enforce --dry-run --evidence DIR [--since 24h] [--config FILE] [--allow DEST]...
//	agenttrail aibom (--evidence DIR | --profiles DIR)... [--out FILE] [--host-files=false] [--timestamp=false]
//
// Exit codes: 0 success, 1 verification failure or error, 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one entry of a dispatch table; subcommands are tables of their own.
type command struct {
	name    string
	args    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the top-level table. Later commands (story show, profile show|promote) are added
// here, each as one entry.
func commands() []command {
	return []command{
		{name: "evidence", args: "<subcommand> ...", summary: "verify and export the tamper-evident evidence archive, create its signing key", run: runEvidence},
		{name: "profile", args: "<subcommand> ...", summary: "review learned behavioural profiles and promote a workload to enforce, alert or observe", run: runProfile},
		{name: "aibom", args: aibomArgs, summary: "write the runtime AI-BOM (CycloneDX 1.6 JSON): per workload the models, tools, MCP servers, AI SDKs and egress observed", run: runAIBOM},
		{name: "help", args: "[command]", summary: "show this help", run: runHelp},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	}
	return dispatch("agenttrail", commands(), args, stdout, stderr)
}

func dispatch(prefix string, table []command, args []string, stdout, stderr io.Writer) int {
	for _, c := range table {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		// Every command group answers --help with its own commands (a subcommand's own flags
		// come from its flag set: `agenttrail evidence verify --help`).
		printTable(stdout, prefix, table)
		return exitOK
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prefix, args[0])
	printTable(stderr, prefix, table)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "agenttrail: runtime evidence for AI workloads")
	fmt.Fprintln(w)
	printTable(w, "agenttrail", commands())
	fmt.Fprintln(w)
	printTable(w, "agenttrail evidence", evidenceCommands())
	fmt.Fprintln(w)
	printTable(w, "agenttrail profile", profileCommands())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Exit codes: 0 success, 1 verification failure or error, 2 usage error.")
}

func printTable(w io.Writer, prefix string, table []command) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range table {
		fmt.Fprintf(w, "  %s %s %s\n      %s\n", prefix, c.name, c.args, c.summary)
	}
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stdout)
		return exitOK
	}
	switch args[0] {
	case "evidence":
		printTable(stdout, "agenttrail evidence", evidenceCommands())
		return exitOK
	case "profile":
		printTable(stdout, "agenttrail profile", profileCommands())
		return exitOK
	case "aibom":
		return runAIBOM([]string{"--help"}, stdout, stdout)
	case "help":
		printUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "agenttrail help: unknown command %q\n", args[0])
	return exitUsage
}

// parseArgs parses flags that may come before, between or after positional arguments (the
// flag package alone stops at the first positional one) and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parsePositional parses args (parseArgs) and wants exactly n positional arguments: none is
// "unexpected argument", a wrong count for n > 0 is said by want. When ok is false the command
// returns exit (help, or a usage error already printed).
func parsePositional(fs *flag.FlagSet, args []string, stderr io.Writer, n int, want string) (pos []string, exit int, ok bool) {
	pos, err := parseArgs(fs, args)
	switch {
	case err != nil:
		return nil, flagParseExit(err), false
	case len(pos) == n:
		return pos, exitOK, true
	case n == 0:
		return nil, usageError(fs, stderr, "unexpected argument %q", pos[0]), false
	default:
		return nil, usageError(fs, stderr, "%s", want), false
	}
}

// newFlagSet returns a flag set whose usage line names the full subcommand.
func newFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s %s\n", name, args)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(stderr, "Flags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// usageError reports a usage problem and returns the usage exit code.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return exitUsage
}

// flagParseExit maps a flag parsing error to an exit code (-h is not an error).
func flagParseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

func joinNonEmpty(sep string, items ...string) string {
	var out []string
	for _, s := range items {
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, sep)
}
