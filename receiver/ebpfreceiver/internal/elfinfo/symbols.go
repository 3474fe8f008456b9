package elfinfo

import (
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Function is a function found in a binary's symbol tables.
type Function struct {
	// Name is the symbol name, e.g. "main.(*Agent).HandlePrompt".
	Name string
	// Address is the symbol's value: the virtual address of its first
	// instruction (use FileOffset for the uprobe offset).
	Address uint64
	// Size is the function's size in bytes; 0 if the symbol table does not
	// record it.
	Size uint64
}

// ErrSymbolNotFound is wrapped by errors from Function when the binary has no
// function of the requested name.
var ErrSymbolNotFound = errors.New("symbol not found")

// SymbolNotFoundError is the error Function returns for a missing symbol. It
// wraps ErrSymbolNotFound.
type SymbolNotFoundError struct {
	Path string
	Name string
	// Suggestions are up to 3 existing function names close to Name, best
	// first.
	Suggestions []string
	// Cause, when not nil, says why a symbol table could not be read (it
	// wraps ErrTooLarge or ErrMalformed): the function may exist there.
	Cause error
}

func (e *SymbolNotFoundError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "elfinfo: %s: function %q: %v", e.Path, e.Name, ErrSymbolNotFound)
	if len(e.Suggestions) > 0 {
		sb.WriteString(" (did you mean ")
		for i, s := range e.Suggestions {
			if i > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%q", s)
		}
		sb.WriteString("?)")
	}
	if e.Cause != nil {
		fmt.Fprintf(&sb, "; not all symbols could be read: %v", e.Cause)
	}
	return sb.String()
}

func (e *SymbolNotFoundError) Unwrap() []error {
	if e.Cause != nil {
		return []error{ErrSymbolNotFound, e.Cause}
	}
	return []error{ErrSymbolNotFound}
}

type symbolTables struct {
	symtab []elf.Symbol // function symbols of .symtab
	dynsym []elf.Symbol // defined function symbols of .dynsym

	pclnLoaded bool
	pcln       *gosym.Table // nil if absent or unreadable

	// err is the first reason a table could not be read (ErrTooLarge,
	// ErrMalformed); nil when every table present was read.
	err error
}

func isDefinedFunc(s elf.Symbol) bool {
	return elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF && s.Value != 0
}

// symbols loads the ELF symbol tables once. Callers hold b.mu.
func (b *Binary) symbols() *symbolTables {
	if b.syms != nil {
		return b.syms
	}
	st := &symbolTables{}
	read := func(typ elf.SectionType, load func() ([]elf.Symbol, error)) []elf.Symbol {
		var out []elf.Symbol
		err := CheckSymbols(b.elf, typ)
		if err == nil {
			err = Guard(func() error {
				syms, err := load()
				if err != nil {
					return nil // absent or unreadable: as if stripped
				}
				for _, s := range syms {
					if isDefinedFunc(s) {
						out = append(out, s)
					}
				}
				return nil
			})
		}
		if err != nil && st.err == nil {
			st.err = fmt.Errorf("%v: %w", typ, err)
		}
		return out
	}
	st.symtab = read(elf.SHT_SYMTAB, b.elf.Symbols)
	st.dynsym = read(elf.SHT_DYNSYM, b.elf.DynamicSymbols)
	b.syms = st
	return st
}

// pclntab parses .gopclntab once. Callers hold b.mu.
func (b *Binary) pclntab() *gosym.Table {
	st := b.symbols()
	if st.pclnLoaded {
		return st.pcln
	}
	st.pclnLoaded = true
	sec := b.elf.Section(".gopclntab")
	if sec == nil {
		return nil
	}
	err := CheckSection(sec)
	if err == nil {
		err = Guard(func() error {
			data, err := sec.Data()
			if err != nil {
				return nil
			}
			if err := CheckPclntab(data); err != nil {
				return err
			}
			var textStart uint64
			if text := b.elf.Section(".text"); text != nil {
				textStart = text.Addr
			}
			if tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart)); err == nil {
				st.pcln = tab
			}
			return nil
		})
	}
	if err != nil {
		st.pcln = nil
		if st.err == nil {
			st.err = fmt.Errorf(".gopclntab: %w", err)
		}
	}
	return st.pcln
}

// Function looks up a function by its symbol name in .symtab, then .dynsym,
// then, for Go binaries (including ones stripped with -ldflags=-s), in the
// Go pclntab. A missing function gives a *SymbolNotFoundError, which wraps
// ErrSymbolNotFound and suggests up to 3 close names.
func (b *Binary) Function(name string) (fn Function, err error) {
	defer b.recoverMalformed(&err, "function "+name)
	b.mu.Lock()
	defer b.mu.Unlock()
	fn, err = b.functionLocked(name)
	if err != nil {
		return Function{}, &SymbolNotFoundError{Path: b.Path, Name: name, Suggestions: suggest(name, b.functionNames(), 3), Cause: b.symbols().err}
	}
	return fn, nil
}

var errNotFound = errors.New("not found")

// functionLocked looks name up; callers hold b.mu.
func (b *Binary) functionLocked(name string) (Function, error) {
	st := b.symbols()
	for _, tab := range [][]elf.Symbol{st.symtab, st.dynsym} {
		for _, s := range tab {
			if s.Name == name {
				fn := Function{Name: name, Address: s.Value, Size: s.Size}
				if fn.Size == 0 && b.IsGo {
					if f := b.pclnFunc(name); f != nil && f.Entry == fn.Address {
						fn.Size = f.End - f.Entry
					}
				}
				return fn, nil
			}
		}
	}
	if b.IsGo {
		if f := b.pclnFunc(name); f != nil {
			return Function{Name: name, Address: f.Entry, Size: f.End - f.Entry}, nil
		}
	}
	return Function{}, errNotFound
}

func (b *Binary) pclnFunc(name string) *gosym.Func {
	tab := b.pclntab()
	if tab == nil {
		return nil
	}
	f := tab.LookupFunc(name)
	if f != nil && f.End < f.Entry {
		return nil // a crafted table: the size would wrap
	}
	return f
}

// functionNames lists every known function name. Callers hold b.mu.
func (b *Binary) functionNames() []string {
	st := b.symbols()
	seen := make(map[string]bool, len(st.symtab)+len(st.dynsym))
	var names []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, s := range st.symtab {
		add(s.Name)
	}
	for _, s := range st.dynsym {
		add(s.Name)
	}
	if b.IsGo {
		if tab := b.pclntab(); tab != nil {
			for i := range tab.Funcs {
				add(tab.Funcs[i].Name)
			}
		}
	}
	return names
}

// normalizeName folds the spellings users commonly confuse: Go pointer
// receivers "(*T)" versus "T" and letter case.
func normalizeName(s string) string {
	return strings.ToLower(receiverMarks.Replace(s))
}

var receiverMarks = strings.NewReplacer("(*", "", ")", "", "*", "")

// lastComponent returns the part after the last '.' outside brackets.
func lastComponent(s string) string {
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ']':
			depth++
		case '[':
			depth--
		case '.':
			if depth == 0 {
				return s[i+1:]
			}
		}
	}
	return s
}

// suggest returns up to max candidates close to name, best first.
func suggest(name string, candidates []string, max int) []string {
	type scored struct {
		name        string
		tier, score int
	}
	want := normalizeName(name)
	wantLast := strings.ToLower(lastComponent(name))
	limit := len(want) / 4
	if limit < 2 {
		limit = 2
	}
	var found []scored
	for _, c := range candidates {
		// A name much longer than the one asked for is no suggestion, and a crafted binary's
		// megabyte-long names would make the edit distances below take minutes.
		if c == name || len(c) > 2*len(name)+64 {
			continue
		}
		norm := normalizeName(c)
		switch {
		case norm == want:
			found = append(found, scored{c, 0, 0})
		case strings.HasSuffix(norm, "."+want) || strings.HasSuffix(want, "."+norm):
			found = append(found, scored{c, 1, abs(len(norm) - len(want))})
		case wantLast != "" && strings.ToLower(lastComponent(c)) == wantLast:
			found = append(found, scored{c, 2, levenshtein(norm, want, 1<<30)})
		default:
			if abs(len(norm)-len(want)) > limit {
				continue
			}
			if d := levenshtein(norm, want, limit); d <= limit {
				found = append(found, scored{c, 3, d})
			}
		}
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.tier != b.tier {
			return a.tier < b.tier
		}
		if a.score != b.score {
			return a.score < b.score
		}
		return a.name < b.name
	})
	var out []string
	for _, f := range found {
		if len(out) == max {
			break
		}
		out = append(out, f.name)
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// levenshtein returns the edit distance between a and b, or a value above
// limit as soon as the distance is known to exceed it.
func levenshtein(a, b string, limit int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
