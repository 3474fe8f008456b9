package elfinfo

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgsGo(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.goBin)

	runArgsCases(t, b, []argsCase{
		{
			name: "method with receiver, strings, int and bool",
			fn:   "main.(*Agent).HandlePrompt", names: []string{"user", "prompt", "n", "flag"},
			want: []Arg{
				{Name: "user", Kind: ArgString, Regs: []Reg{RegRBX, RegRCX}, Index: 1},
				{Name: "prompt", Kind: ArgString, Regs: []Reg{RegRDI, RegRSI}, Index: 2},
				{Name: "n", Kind: ArgInt, Size: 8, Regs: []Reg{RegR8}, Index: 3},
				{Name: "flag", Kind: ArgBool, Size: 1, Regs: []Reg{RegR9}, Index: 4},
			},
		},
		{
			name: "requested order is kept",
			fn:   "main.(*Agent).HandlePrompt", names: []string{"flag", "user"},
			want: []Arg{
				{Name: "flag", Kind: ArgBool, Size: 1, Regs: []Reg{RegR9}, Index: 4},
				{Name: "user", Kind: ArgString, Regs: []Reg{RegRBX, RegRCX}, Index: 1},
			},
		},
		{
			name: "byte slice after uint32, then int8",
			fn:   "main.WriteBytes", names: []string{"id", "data", "small"},
			want: []Arg{
				{Name: "id", Kind: ArgUint, Size: 4, Regs: []Reg{RegRAX}, Index: 0},
				{Name: "data", Kind: ArgBytes, Regs: []Reg{RegRBX, RegRCX}, Index: 1},
				{Name: "small", Kind: ArgInt, Size: 1, Regs: []Reg{RegRSI}, Index: 2},
			},
		},
		{
			name: "floats do not consume integer registers",
			fn:   "main.Scale", names: []string{"label", "count", "lvl"},
			want: []Arg{
				{Name: "label", Kind: ArgString, Regs: []Reg{RegRAX, RegRBX}, Index: 1},
				{Name: "count", Kind: ArgUint, Size: 2, Regs: []Reg{RegRCX}, Index: 3},
				{Name: "lvl", Kind: ArgInt, Size: 2, Regs: []Reg{RegRDI}, Index: 4},
			},
		},
		{
			name: "stack-assigned parameter consumes no register",
			fn:   "main.Many", names: []string{"a", "h", "last"},
			want: []Arg{
				{Name: "a", Kind: ArgInt, Size: 8, Regs: []Reg{RegRAX}, Index: 0},
				{Name: "h", Kind: ArgInt, Size: 8, Regs: []Reg{RegR10}, Index: 7},
				{Name: "last", Kind: ArgUint, Size: 8, Regs: []Reg{RegR11}, Index: 9},
			},
		},
		{
			name: "struct, arrays, zero-sized field and interface before a bool",
			fn:   "main.Mixed", names: []string{"tail"},
			want: []Arg{{Name: "tail", Kind: ArgBool, Size: 1, Regs: []Reg{RegR11}, Index: 6}},
		},
		{
			name: "map, chan, func, pointer, complex, error before string and uintptr",
			fn:   "main.Kinds", names: []string{"name", "u"},
			want: []Arg{
				{Name: "name", Kind: ArgString, Regs: []Reg{RegR9, RegR10}, Index: 6},
				{Name: "u", Kind: ArgUint, Size: 8, Regs: []Reg{RegR11}, Index: 7},
			},
		},
		{
			name: "generic function takes its dictionary first",
			fn:   "main.Pair[go.shape.int]", names: []string{"x", "label"},
			want: []Arg{
				{Name: "x", Kind: ArgInt, Size: 8, Regs: []Reg{RegRBX}, Index: 0},
				{Name: "label", Kind: ArgString, Regs: []Reg{RegRCX, RegRDI}, Index: 1},
			},
		},
		{
			name: "generic shape string",
			fn:   "main.Pair[go.shape.string]", names: []string{"x", "label"},
			want: []Arg{
				{Name: "x", Kind: ArgString, Regs: []Reg{RegRBX, RegRCX}, Index: 0},
				{Name: "label", Kind: ArgString, Regs: []Reg{RegRDI, RegRSI}, Index: 1},
			},
		},
		{
			name: "generic method takes its dictionary after the receiver",
			fn:   "main.(*Box[go.shape.int]).Put", names: []string{"x", "key"},
			want: []Arg{
				{Name: "x", Kind: ArgInt, Size: 8, Regs: []Reg{RegRCX}, Index: 1},
				{Name: "key", Kind: ArgString, Regs: []Reg{RegRDI, RegRSI}, Index: 2},
			},
		},
		{
			name: "no names",
			fn:   "main.Classify", names: nil,
			want: []Arg{},
		},
	})
}

// argsCase is one successful Args call: fn's parameters names resolve to want.
type argsCase struct {
	name  string
	fn    string
	names []string
	want  []Arg
}

func runArgsCases(t *testing.T, b *Binary, cases []argsCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Args(tc.fn, tc.names)
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			assertArgs(t, got, tc.want)
		})
	}
}

// argsErrorCase is one refused Args call: the error wraps is (when set) and
// names every string of contains.
type argsErrorCase struct {
	name     string
	bin      *Binary
	fn       string
	names    []string
	is       error
	contains []string
}

func runArgsErrorCases(t *testing.T, cases []argsErrorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.bin.Args(tc.fn, tc.names)
			if err == nil {
				t.Fatal("Args succeeded, want error")
			}
			checkError(t, err, tc.is, tc.contains)
		})
	}
}

// checkError checks that err wraps is (when not nil) and mentions every string of contains.
func checkError(t *testing.T, err, is error, contains []string) {
	t.Helper()
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %v does not wrap %v", err, is)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func assertArgs(t *testing.T, got, want []Arg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d args %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Kind != w.Kind || g.Size != w.Size || g.Index != w.Index || !slices.Equal(g.Regs, w.Regs) {
			t.Errorf("arg %d = %s, want %s", i, fmtArg(g), fmtArg(w))
		}
	}
}

func fmtArg(a Arg) string {
	return fmt.Sprintf("{%s %v size=%d regs=%v index=%d}", a.Name, a.Kind, a.Size, a.Regs, a.Index)
}

func TestArgsGoErrors(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.goBin)
	stripped := openBinary(t, fx.goStripped)

	runArgsErrorCases(t, []argsErrorCase{
		{
			name: "unknown parameter lists the parameters", bin: b,
			fn: "main.(*Agent).HandlePrompt", names: []string{"user", "promptt"},
			contains: []string{`"promptt"`, "main.(*Agent).HandlePrompt", "a *main.Agent", "user string", "prompt string", "n int", "flag bool"},
		},
		{
			name: "results are not parameters", bin: b,
			fn: "main.Classify", names: []string{"~r0"},
			contains: []string{`no parameter "~r0"`, "n int, s string"},
		},
		{
			name: "float parameter", bin: b,
			fn: "main.Scale", names: []string{"factor"},
			contains: []string{`"factor"`, "float64", "main.Scale", "not supported"},
		},
		{
			name: "pointer receiver", bin: b,
			fn: "main.(*Agent).HandlePrompt", names: []string{"a"},
			contains: []string{`"a"`, "*main.Agent", "not supported"},
		},
		{
			name: "map parameter", bin: b,
			fn: "main.Kinds", names: []string{"m"},
			contains: []string{`"m"`, "map[string]int", "main.Kinds"},
		},
		{
			name: "string on the stack", bin: b,
			fn: "main.Many", names: []string{"s"},
			contains: []string{`"s"`, "string", "main.Many", "stack"},
		},
		{
			name: "array of length 2 on the stack", bin: b,
			fn: "main.Mixed", names: []string{"arr"},
			contains: []string{`"arr"`, "[2]int", "main.Mixed"},
		},
		{
			name: "unknown function", bin: b,
			fn: "main.NoSuchFunction", names: []string{"x"},
			is: ErrSymbolNotFound, contains: []string{"main.NoSuchFunction", fx.goBin},
		},
		{
			name: "no DWARF", bin: stripped,
			fn: "main.(*Agent).HandlePrompt", names: []string{"user"},
			is: ErrNoDWARF, contains: []string{fx.goStripped, "-s -w", "debug info"},
		},
	})
}

func TestArgsC(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.cBin)

	runArgsCases(t, b, []argsCase{
		{
			name: "string, int and long",
			fn:   "process", names: []string{"name", "count", "big"},
			want: []Arg{
				{Name: "name", Kind: ArgCString, Regs: []Reg{RegRDI}, Index: 0},
				{Name: "count", Kind: ArgInt, Size: 4, Regs: []Reg{RegRSI}, Index: 1},
				{Name: "big", Kind: ArgInt, Size: 8, Regs: []Reg{RegRDX}, Index: 2},
			},
		},
		{
			name: "bool, unsigned char, typedefs, char buffer",
			fn:   "flags", names: []string{"on", "level", "id", "buf", "delta", "tiny"},
			want: []Arg{
				{Name: "on", Kind: ArgBool, Size: 1, Regs: []Reg{RegRDI}, Index: 0},
				{Name: "level", Kind: ArgUint, Size: 1, Regs: []Reg{RegRSI}, Index: 1},
				{Name: "id", Kind: ArgUint, Size: 8, Regs: []Reg{RegRDX}, Index: 2},
				{Name: "buf", Kind: ArgCString, Regs: []Reg{RegRCX}, Index: 3},
				{Name: "delta", Kind: ArgInt, Size: 2, Regs: []Reg{RegR8}, Index: 4},
				{Name: "tiny", Kind: ArgInt, Size: 1, Regs: []Reg{RegR9}, Index: 5},
			},
		},
		{
			name: "floats use XMM registers",
			fn:   "after_float", names: []string{"label", "count"},
			want: []Arg{
				{Name: "label", Kind: ArgCString, Regs: []Reg{RegRDI}, Index: 1},
				{Name: "count", Kind: ArgUint, Size: 4, Regs: []Reg{RegRSI}, Index: 3},
			},
		},
		{
			name: "sixth argument",
			fn:   "seven", names: []string{"f"},
			want: []Arg{{Name: "f", Kind: ArgInt, Size: 8, Regs: []Reg{RegR9}, Index: 5}},
		},
		{
			name: "small struct takes two registers, big struct none",
			fn:   "with_struct", names: []string{"tag", "n"},
			want: []Arg{
				{Name: "tag", Kind: ArgCString, Regs: []Reg{RegRDX}, Index: 1},
				{Name: "n", Kind: ArgInt, Size: 4, Regs: []Reg{RegRCX}, Index: 3},
			},
		},
		{
			name: "struct return in memory takes RDI",
			fn:   "make_big", names: []string{"x", "why"},
			want: []Arg{
				{Name: "x", Kind: ArgInt, Size: 4, Regs: []Reg{RegRSI}, Index: 0},
				{Name: "why", Kind: ArgCString, Regs: []Reg{RegRDX}, Index: 1},
			},
		},
		{
			name: "local function keeps its signature with gcc -O1",
			fn:   "skip_first", names: []string{"n"},
			want: []Arg{{Name: "n", Kind: ArgInt, Size: 4, Regs: []Reg{RegRSI}, Index: 1}},
		},
		{
			name: "struct with double and int, then enum",
			fn:   "with_mixed", names: []string{"k", "c"},
			want: []Arg{
				{Name: "k", Kind: ArgInt, Size: 8, Regs: []Reg{RegRSI}, Index: 1},
				{Name: "c", Kind: ArgUint, Size: 4, Regs: []Reg{RegRDX}, Index: 2},
			},
		},
	})
}

func TestArgsCErrors(t *testing.T) {
	fx := buildFixtures(t)
	b := openBinary(t, fx.cBin)
	nodebug := openBinary(t, fx.cStrippedDW)

	runArgsErrorCases(t, []argsErrorCase{
		{name: "seventh argument is on the stack", bin: b, fn: "seven", names: []string{"g"}, contains: []string{`"g"`, "long int", "seven", "stack"}},
		{name: "struct in memory", bin: b, fn: "with_struct", names: []string{"b"}, contains: []string{`"b"`, "struct big", "with_struct"}},
		{name: "struct in registers", bin: b, fn: "with_struct", names: []string{"s"}, contains: []string{`"s"`, "struct small", "not supported"}},
		{name: "double", bin: b, fn: "after_float", names: []string{"ratio"}, contains: []string{`"ratio"`, "double", "not supported"}},
		{name: "int pointer", bin: b, fn: "with_mixed", names: []string{"p"}, contains: []string{`"p"`, "int *", "char pointers"}},
		{name: "unknown name", bin: b, fn: "process", names: []string{"nam"}, contains: []string{`"nam"`, "name const char *", "count int", "big long int"}},
		{name: "no DWARF", bin: nodebug, fn: "process", names: []string{"name"}, is: ErrNoDWARF, contains: []string{fx.cStrippedDW}},
	})
}

// TestArgsClangChangedSignature builds prog.c with clang -O2, which removes
// the unused first argument of the internal function skip_first: the ABI's
// registers are then wrong and Args must refuse instead of returning them.
func TestArgsClangChangedSignature(t *testing.T) {
	clang := requireTool(t, "clang")
	dir := t.TempDir()
	out := filepath.Join(dir, "cprog-clang")
	src, err := filepath.Abs(filepath.Join("testdata", "cprog", "prog.c"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, dir, nil, clang, "-g", "-O2", "-o", out, src)
	b := openBinary(t, out)

	_, err = b.Args("skip_first", []string{"n"})
	if err == nil || !strings.Contains(err.Error(), "calling convention") || !strings.Contains(err.Error(), "skip_first") {
		t.Fatalf("Args(skip_first) error = %v, want a changed calling convention", err)
	}
	// Exported functions keep the ABI.
	got, err := b.Args("process", []string{"name", "count", "big"})
	if err != nil {
		t.Fatalf("Args(process): %v", err)
	}
	assertArgs(t, got, []Arg{
		{Name: "name", Kind: ArgCString, Regs: []Reg{RegRDI}, Index: 0},
		{Name: "count", Kind: ArgInt, Size: 4, Regs: []Reg{RegRSI}, Index: 1},
		{Name: "big", Kind: ArgInt, Size: 8, Regs: []Reg{RegRDX}, Index: 2},
	})
}

func TestArgsRust(t *testing.T) {
	path := buildRust(t)
	b := openBinary(t, path)

	tests := []struct {
		name     string
		prefix   string // of the mangled symbol
		names    []string
		want     []Arg
		contains string // expected error
	}{
		{
			name: "scalars", prefix: "_ZN4prog5flags", names: []string{"on", "level", "id", "delta"},
			want: []Arg{
				{Name: "on", Kind: ArgBool, Size: 1, Regs: []Reg{RegRDI}, Index: 0},
				{Name: "level", Kind: ArgUint, Size: 1, Regs: []Reg{RegRSI}, Index: 1},
				{Name: "id", Kind: ArgUint, Size: 8, Regs: []Reg{RegRDX}, Index: 2},
				{Name: "delta", Kind: ArgInt, Size: 2, Regs: []Reg{RegRCX}, Index: 3},
			},
		},
		{name: "scalar pair struct", prefix: "_ZN4prog9with_pair", names: []string{"n"}, want: []Arg{{Name: "n", Kind: ArgUint, Size: 8, Regs: []Reg{RegRDX}, Index: 1}}},
		{name: "big struct by reference", prefix: "_ZN4prog8with_big", names: []string{"n"}, want: []Arg{{Name: "n", Kind: ArgUint, Size: 8, Regs: []Reg{RegRSI}, Index: 1}}},
		{name: "float and integer pair", prefix: "_ZN4prog10with_mixed", names: []string{"n"}, want: []Arg{{Name: "n", Kind: ArgUint, Size: 8, Regs: []Reg{RegRSI}, Index: 1}}},
		{
			name: "big result through RDI", prefix: "_ZN4prog8make_big", names: []string{"x", "y"},
			want: []Arg{
				{Name: "x", Kind: ArgUint, Size: 8, Regs: []Reg{RegRSI}, Index: 0},
				{Name: "y", Kind: ArgUint, Size: 4, Regs: []Reg{RegRDX}, Index: 1},
			},
		},
		{name: "tuple and unit", prefix: "_ZN4prog5tuple", names: []string{"n"}, want: []Arg{{Name: "n", Kind: ArgUint, Size: 8, Regs: []Reg{RegRDX}, Index: 2}}},
		{name: "aggregate", prefix: "_ZN4prog9with_pair", names: []string{"p"}, contains: "Rust aggregates are not supported"},
		{name: "signature changed by the optimiser", prefix: "_ZN4prog7process", names: []string{"count"}, contains: "calling convention"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn := symbolWithPrefix(t, b, tc.prefix)
			got, err := b.Args(fn, tc.names)
			if tc.contains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.contains) {
					t.Fatalf("Args error = %v, want one containing %q", err, tc.contains)
				}
				return
			}
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			assertArgs(t, got, tc.want)
		})
	}
}

// TestRegisterAssignmentMatchesCompiler checks the ABI register assignment
// against the compilers' own DWARF location lists at function entry, for
// every function with parameters in the fixtures: all of the Go runtime and
// standard library linked into goprog, and all of prog.c.
func TestRegisterAssignmentMatchesCompiler(t *testing.T) {
	fx := buildFixtures(t)
	clangO1 := func(t *testing.T) string {
		t.Helper()
		clang := requireTool(t, "clang")
		dir := t.TempDir()
		src, err := filepath.Abs(filepath.Join("testdata", "cprog", "prog.c"))
		if err != nil {
			t.Fatal(err)
		}
		run(t, dir, nil, clang, "-g", "-O1", "-o", filepath.Join(dir, "cprog-clang"), src)
		return filepath.Join(dir, "cprog-clang")
	}
	tests := []struct {
		name        string
		build       func(t *testing.T) string
		langs       map[int64]bool
		namePrefix  string
		abi         ABI
		perRegister bool
		minChecked  int
		// mayChange lists functions whose calling convention the
		// optimiser may change (Args then refuses them).
		mayChange []string
	}{
		{
			name: "go", build: func(*testing.T) string { return fx.goBin }, langs: map[int64]bool{langGo: true},
			abi: ABIGoInternal, perRegister: true, minChecked: 1000,
		},
		{name: "gcc", build: func(*testing.T) string { return fx.cBin }, abi: ABISystemV, minChecked: 30},
		{name: "clang", build: clangO1, abi: ABISystemV, minChecked: 20, mayChange: []string{"skip_first"}},
		{
			name: "rust", build: buildRust, langs: map[int64]bool{langRust: true}, namePrefix: "_ZN4prog",
			abi: ABIRust, minChecked: 10, mayChange: []string{"_ZN4prog7process"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.build(t)
			b := openBinary(t, path)
			funcs := compilerLocations(t, path, tc.langs)
			checked, mismatches, wrappers, aliased := 0, 0, 0, 0
			for _, cf := range funcs {
				if !strings.HasPrefix(cf.name, tc.namePrefix) {
					continue
				}
				if fn, err := b.Function(cf.name); err != nil || fn.Address != cf.lowPC {
					// Go describes an ABI0 wrapper (symbol "name.abi0") under
					// the same DWARF name; it is not what the symbol names.
					wrappers++
					continue
				}
				params, abi, err := b.Parameters(cf.name)
				if err != nil {
					t.Errorf("Parameters(%s): %v", cf.name, err)
					continue
				}
				if abi != tc.abi {
					t.Errorf("Parameters(%s) ABI = %s, want %s", cf.name, abi, tc.abi)
				}
				if len(params) != len(cf.params) {
					t.Errorf("%s: %d parameters, compiler lists %d", cf.name, len(params), len(cf.params))
					continue
				}
				regOwner := map[Reg]string{}
				for _, p := range params {
					for _, r := range p.Regs {
						regOwner[r] = p.Name
					}
				}
				for i, cp := range cf.params {
					if cp.name != "" && params[i].Name != cp.name {
						t.Errorf("%s: parameter %d is %q, compiler says %q", cf.name, i, params[i].Name, cp.name)
						continue
					}
					if !cp.hasLoc {
						continue
					}
					if strings.Contains(params[i].Problem, "calling convention") {
						if !slices.ContainsFunc(tc.mayChange, func(p string) bool { return strings.HasPrefix(cf.name, p) }) {
							t.Errorf("%s: unexpected changed calling convention: %s", cf.name, params[i].Problem)
						}
						continue
					}
					checked++
					others := maps.Clone(regOwner)
					for _, r := range params[i].Regs {
						delete(others, r)
					}
					msg, alias := compareLocation(params[i], cp, tc.perRegister, others)
					if alias != "" {
						aliased++
						t.Logf("%s: the compiler's entry location of %s is that of %s (a reassigned parameter); not counted", cf.name, cp.name, alias)
					}
					if msg != "" {
						mismatches++
						if mismatches <= 30 {
							t.Errorf("%s: parameter %s %s: %s", cf.name, cp.name, params[i].Type, msg)
						}
					}
				}
			}
			t.Logf("%d functions (%d wrappers skipped), %d parameter locations checked, %d mismatches, %d aliased", len(funcs), wrappers, checked, mismatches, aliased)
			if aliased > checked/100 {
				t.Errorf("%d of %d locations only matched as aliases of other parameters", aliased, checked)
			}
			if checked < tc.minChecked {
				t.Errorf("only %d parameter locations checked, want at least %d", checked, tc.minChecked)
			}
		})
	}
}
