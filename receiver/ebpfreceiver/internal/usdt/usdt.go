// Package usdt reads the USDT (SystemTap SDT) probes of an ELF binary from its .note.stapsdt
// notes: provider, name, the probe's address and file offset, its semaphore's file offset (for
// the kernel's uprobe reference counter), and its argument specs (`-8@%rax`, `4@-20(%rbp)`,
// `8@$5`), so the eBPF side can read each argument from the right register or memory.
//
// The binary is a traced process's choice: the section is read only up to 4 MiB, at most
// 16384 probes of at most 12 arguments each; a malformed, truncated or oversized section,
// and a panic of debug/elf on the file, give errors wrapping ErrBadNote.
package usdt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/elfinfo"
)

// Probe is one USDT probe site.
type Probe struct {
	Provider string
	Name     string
	// Address is the probe's link-time virtual address (adjusted for prelinking); FileOffset
	// is where it is in the file, which is what a uprobe attaches to.
	Address    uint64
	FileOffset uint64
	// Semaphore is the link-time address of the probe's enable counter (0: none) and
	// SemaphoreOffset its file offset, the uprobe's reference counter offset.
	Semaphore       uint64
	SemaphoreOffset uint64
	Args            []Arg
	RawArgs         string
}

// ArgKind says where an argument is.
type ArgKind uint8

const (
	ArgConst  ArgKind = 1 // the value is Offset
	ArgReg    ArgKind = 2 // in register Reg
	ArgMemory ArgKind = 3 // in memory at Reg + Offset
)

// Arg is one argument's location.
type Arg struct {
	Size   uint8 // bytes: 1, 2, 4 or 8
	Signed bool
	Kind   ArgKind
	Reg    elfinfo.Reg // base register (numbering of enum reg_id)
	Offset int64
}

var regNames = map[string]elfinfo.Reg{}

func init() {
	add := func(r elfinfo.Reg, names ...string) {
		for _, n := range names {
			regNames[n] = r
		}
	}
	add(elfinfo.RegRAX, "rax", "eax", "ax", "al")
	add(elfinfo.RegRBX, "rbx", "ebx", "bx", "bl")
	add(elfinfo.RegRCX, "rcx", "ecx", "cx", "cl")
	add(elfinfo.RegRDX, "rdx", "edx", "dx", "dl")
	add(elfinfo.RegRSI, "rsi", "esi", "si", "sil")
	add(elfinfo.RegRDI, "rdi", "edi", "di", "dil")
	add(elfinfo.RegRBP, "rbp", "ebp", "bp", "bpl")
	add(elfinfo.RegRSP, "rsp", "esp", "sp", "spl")
	for i, r := range []elfinfo.Reg{elfinfo.RegR8, elfinfo.RegR9, elfinfo.RegR10, elfinfo.RegR11, elfinfo.RegR12, elfinfo.RegR13, elfinfo.RegR14, elfinfo.RegR15} {
		n := "r" + strconv.Itoa(8+i)
		add(r, n, n+"d", n+"w", n+"b")
	}
}

// maxArgs is the most arguments <sys/sdt.h> gives a probe.
const maxArgs = 12

// ParseArgs parses a probe's argument string: space-separated `[-]N@location` items, at most
// 12 of them.
func ParseArgs(s string) ([]Arg, error) {
	var out []Arg
	for _, item := range strings.Fields(s) {
		if len(out) == maxArgs {
			return nil, fmt.Errorf("usdt arguments %.64q: more than %d", s, maxArgs)
		}
		a, err := ParseArg(item)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// ParseArg parses one argument spec of x86-64: `-8@%rax`, `4@-20(%rbp)`, `8@(%rdi)`, `-4@$-1`.
func ParseArg(s string) (Arg, error) {
	sizeStr, loc, ok := strings.Cut(s, "@")
	if !ok {
		return Arg{}, fmt.Errorf("usdt argument %q: no size", s)
	}
	size, err := strconv.Atoi(sizeStr)
	if err != nil {
		return Arg{}, fmt.Errorf("usdt argument %q: size: %w", s, err)
	}
	a := Arg{Signed: size < 0}
	if size < 0 {
		size = -size
	}
	switch size {
	case 1, 2, 4, 8:
		a.Size = uint8(size)
	default:
		return Arg{}, fmt.Errorf("usdt argument %q: size %d is not 1, 2, 4 or 8", s, size)
	}
	switch {
	case strings.HasPrefix(loc, "$"):
		v, err := strconv.ParseInt(loc[1:], 0, 64)
		if err != nil {
			return Arg{}, fmt.Errorf("usdt argument %q: constant: %w", s, err)
		}
		a.Kind, a.Offset = ArgConst, v
	case strings.HasPrefix(loc, "%"):
		r, ok := regNames[loc[1:]]
		if !ok {
			return Arg{}, fmt.Errorf("usdt argument %q: unsupported register %s", s, loc)
		}
		a.Kind, a.Reg = ArgReg, r
	default:
		open := strings.IndexByte(loc, '(')
		if open < 0 || !strings.HasSuffix(loc, ")") {
			return Arg{}, fmt.Errorf("usdt argument %q: unsupported location %s", s, loc)
		}
		inner := loc[open+1 : len(loc)-1]
		if !strings.HasPrefix(inner, "%") || strings.Contains(inner, ",") {
			return Arg{}, fmt.Errorf("usdt argument %q: unsupported addressing mode %s", s, loc)
		}
		r, ok := regNames[inner[1:]]
		if !ok {
			return Arg{}, fmt.Errorf("usdt argument %q: unsupported register %s", s, inner)
		}
		a.Kind, a.Reg = ArgMemory, r
		if off := loc[:open]; off != "" {
			v, err := strconv.ParseInt(off, 0, 64)
			if err != nil {
				return Arg{}, fmt.Errorf("usdt argument %q: offset: %w", s, err)
			}
			a.Offset = v
		}
	}
	return a, nil
}

// ErrNoProbes: the binary has no .note.stapsdt section.
var ErrNoProbes = errors.New("the binary has no USDT probes (.note.stapsdt)")

// The notes come from a binary a traced process chose: bounded before they are read.
const (
	// maxNotesSize bounds the .note.stapsdt section (CPython's is under 2 KiB; a probe's note
	// is some 60 bytes plus its names and argument string).
	maxNotesSize = 4 << 20
	// maxProbes bounds the probes read from one binary.
	maxProbes = 1 << 14
)

// ErrBadNote is wrapped by the errors of Read about a malformed .note.stapsdt (a truncated
// note, probe strings or argument specs that do not parse, too many probes, a panic of
// debug/elf on the file): the binary's probes cannot be attached, and callers count it.
var ErrBadNote = errors.New("malformed USDT note")

// Read returns every USDT probe of the ELF file. A binary without probes gives ErrNoProbes;
// a malformed or oversized section gives an error wrapping ErrBadNote (with the probes read
// before the bad note).
func Read(f *elf.File) (probes []Probe, err error) {
	defer func() {
		if r := recover(); r != nil {
			probes, err = nil, fmt.Errorf("%w: %w", ErrBadNote, elfinfo.Recovered(r))
		}
	}()
	sec := f.Section(".note.stapsdt")
	if sec == nil {
		return nil, ErrNoProbes
	}
	if n := elfinfo.SectionSize(sec); n > maxNotesSize {
		return nil, fmt.Errorf("%w: .note.stapsdt of %d bytes is larger than %d", ErrBadNote, n, maxNotesSize)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .note.stapsdt: %w", err)
	}
	// Prelink may have moved the binary: the notes hold the link-time address of
	// .stapsdt.base, and every address moves by the difference.
	var baseAddr uint64
	hasBase := false
	if b := f.Section(".stapsdt.base"); b != nil {
		baseAddr, hasBase = b.Addr, true
	}
	order := f.ByteOrder
	for len(data) >= 12 {
		namesz := order.Uint32(data[0:])
		descsz := order.Uint32(data[4:])
		typ := order.Uint32(data[8:])
		data = data[12:]
		nameLen := align4(namesz)
		descLen := align4(descsz)
		if uint64(len(data)) < nameLen+descLen {
			return probes, fmt.Errorf("%w: .note.stapsdt: truncated note", ErrBadNote)
		}
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		desc := data[nameLen : nameLen+uint64(descsz)]
		data = data[nameLen+descLen:]
		if name != "stapsdt" || typ != 3 || len(desc) < 24 {
			continue
		}
		if len(probes) >= maxProbes {
			return probes, fmt.Errorf("%w: more than %d probes", ErrBadNote, maxProbes)
		}
		p, err := parseNote(desc, order)
		if err != nil {
			return probes, fmt.Errorf("%w: %w", ErrBadNote, err)
		}
		if hasBase && p.base != 0 {
			p.Address += baseAddr - p.base
			if p.Semaphore != 0 {
				p.Semaphore += baseAddr - p.base
			}
		}
		if p.FileOffset, err = fileOffset(f, p.Address); err != nil {
			return probes, fmt.Errorf("%w: probe %s:%s: %w", ErrBadNote, p.Provider, p.Name, err)
		}
		if p.Semaphore != 0 {
			if p.SemaphoreOffset, err = fileOffset(f, p.Semaphore); err != nil {
				return probes, fmt.Errorf("%w: probe %s:%s semaphore: %w", ErrBadNote, p.Provider, p.Name, err)
			}
		}
		probes = append(probes, p.Probe)
	}
	return probes, nil
}

// Find returns the probe provider:name, or an error listing the probes there are.
func Find(probes []Probe, provider, name string) (Probe, error) {
	var names []string
	for _, p := range probes {
		if p.Provider == provider && p.Name == name {
			return p, nil
		}
		names = append(names, p.Provider+":"+p.Name)
	}
	return Probe{}, fmt.Errorf("no USDT probe %s:%s (the binary has: %s)", provider, name, strings.Join(names, ", "))
}

type note struct {
	Probe
	base uint64
}

func parseNote(desc []byte, order binary.ByteOrder) (note, error) {
	var n note
	n.Address = order.Uint64(desc[0:])
	n.base = order.Uint64(desc[8:])
	n.Semaphore = order.Uint64(desc[16:])
	strs := bytes.SplitN(desc[24:], []byte{0}, 4)
	if len(strs) < 3 {
		return n, errors.New(".note.stapsdt: malformed probe strings")
	}
	n.Provider, n.Name, n.RawArgs = string(strs[0]), string(strs[1]), string(strs[2])
	args, err := ParseArgs(n.RawArgs)
	if err != nil {
		return n, fmt.Errorf("probe %s:%s: %w", n.Provider, n.Name, err)
	}
	n.Args = args
	return n, nil
}

// fileOffset maps a virtual address to its offset in the file through the loadable segments.
func fileOffset(f *elf.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if addr >= p.Vaddr && addr-p.Vaddr < p.Filesz { // no p.Vaddr+p.Filesz: it may wrap
			return addr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment of the file", addr)
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
