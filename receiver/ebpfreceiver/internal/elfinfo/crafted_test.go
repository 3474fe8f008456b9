package elfinfo

import (
	"debug/dwarf"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// Hand-made DWARF for the type shapes a crafted binary can declare and no compiler emits.

// Abbreviation codes of craftedAbbrev.
const (
	abCU     = 1 // compile unit: language
	abSub    = 2 // subprogram: name, low_pc
	abParam  = 3 // formal parameter: name, type
	abPtr    = 4 // pointer type: type, byte_size
	abStruct = 5 // structure type: name, byte_size
	abMember = 6 // member: name, type, data_member_location (sdata)
	abArray  = 7 // array type: type, byte_size
	abRange  = 8 // subrange type: count (data8)
)

var craftedAbbrev = []byte{
	abCU, 0x11, 1, 0x13, 0x0b, 0, 0, // DW_TAG_compile_unit, children: DW_AT_language data1
	abSub, 0x2e, 1, 0x03, 0x08, 0x11, 0x01, 0, 0, // DW_TAG_subprogram, children: name string, low_pc addr
	abParam, 0x05, 0, 0x03, 0x08, 0x49, 0x13, 0, 0, // DW_TAG_formal_parameter: name string, type ref4
	abPtr, 0x0f, 0, 0x49, 0x13, 0x0b, 0x0b, 0, 0, // DW_TAG_pointer_type: type ref4, byte_size data1
	abStruct, 0x13, 1, 0x03, 0x08, 0x0b, 0x0b, 0, 0, // DW_TAG_structure_type, children: name, byte_size
	abMember, 0x0d, 0, 0x03, 0x08, 0x49, 0x13, 0x38, 0x0d, 0, 0, // DW_TAG_member: name, type ref4, data_member_location sdata
	abArray, 0x01, 1, 0x49, 0x13, 0x0b, 0x0b, 0, 0, // DW_TAG_array_type, children: type ref4, byte_size data1
	abRange, 0x21, 0, 0x37, 0x07, 0, 0, // DW_TAG_subrange_type: count data8
	0,
}

// die is one entry of a crafted unit: an abbreviation code and its values (string, ref: the
// index of another die, uint8: data1, int64: sdata, uint64: addr or data8), or, with code
// 0, the end of the previous entry's children.
type die struct {
	code int
	vals []any
}

type ref int

// craftDWARF assembles a DWARF 4 unit of dies.
func craftDWARF(t *testing.T, dies []die) *dwarf.Data {
	t.Helper()
	d, err := dwarf.New(craftedAbbrev, nil, nil, craftInfo(t, dies), nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// craftInfo assembles the .debug_info of a DWARF 4 unit of dies.
func craftInfo(t testing.TB, dies []die) []byte {
	t.Helper()
	size := func(v any) int { // of every value but int64 (sleb128)
		switch v := v.(type) {
		case string:
			return len(v) + 1
		case ref:
			return 4
		case uint8:
			return 1
		case uint64:
			return 8
		}
		t.Fatalf("value %T", v)
		return 0
	}
	sleb := func(v int64) []byte {
		var out []byte
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
				return append(out, c)
			}
			out = append(out, c|0x80)
		}
	}
	offs := make([]int, len(dies))
	off := 11 // the unit header
	for i, d := range dies {
		offs[i] = off
		off++ // codes are single-byte
		for _, v := range d.vals {
			if s, ok := v.(int64); ok {
				off += len(sleb(s))
				continue
			}
			off += size(v)
		}
	}
	info := binary.LittleEndian.AppendUint32(nil, uint32(off-4))
	info = binary.LittleEndian.AppendUint16(info, 4)
	info = binary.LittleEndian.AppendUint32(info, 0)
	info = append(info, 8)
	for _, d := range dies {
		info = append(info, byte(d.code))
		for _, v := range d.vals {
			switch v := v.(type) {
			case string:
				info = append(append(info, v...), 0)
			case ref:
				info = binary.LittleEndian.AppendUint32(info, uint32(offs[v]))
			case uint8:
				info = append(info, v)
			case int64:
				info = append(info, sleb(v)...)
			case uint64:
				info = binary.LittleEndian.AppendUint64(info, v)
			}
		}
	}
	return info
}

// paramsOf runs what Binary.Parameters runs on function "f" of d, for the Go and the System V
// ABIs, and fails if that takes more than a few seconds (the walks used to be exponential).
func paramsOf(t *testing.T, d *dwarf.Data) (goParams, cParams []Param) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		idx, err := buildSubprogramIndex(d, 1<<20)
		if err != nil {
			t.Error(err)
			return
		}
		sp := idx.lookup("f", 0)
		if sp == nil {
			t.Error("no subprogram f")
			return
		}
		tr := newTypeReader(d)
		formals, ret, err := tr.formals(sp)
		if err != nil {
			t.Error(err)
			return
		}
		goParams = tr.goParams("f", formals, false)
		cParams = newTypeReader(d).sysvParams(formals, ret, false)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the parameters' types are still being walked after 20 s")
	}
	return goParams, cParams
}

// TestSelfPointer: a pointer type that points to itself is named without recursing forever
// (a goroutine stack overflow is fatal, not a recoverable panic).
func TestSelfPointer(t *testing.T) {
	d := craftDWARF(t, []die{
		{abCU, []any{uint8(0x0c)}}, // 0: C99
		{abSub, []any{"f", uint64(0x1000)}},
		{abParam, []any{"p", ref(4)}},
		{0, nil},
		{abPtr, []any{ref(4), uint8(8)}}, // 4: pointer to itself
		{0, nil},
	})
	_, c := paramsOf(t, d)
	if len(c) != 1 || !strings.HasPrefix(c[0].Type, "? *") {
		t.Fatalf("parameters %+v", c)
	}
}

// TestExponentialTypes: struct S0 { S1 a, b; }, S1 { S2 a, b; }, ... S30 {}: 2^30 paths
// through 31 types, within the walks' depth limits (64 for Go, 32 for C). The walks stop at
// maxTypeSteps.
func TestExponentialTypes(t *testing.T) {
	const levels = 30
	dies := []die{
		{abCU, []any{uint8(0x0c)}},
		{abSub, []any{"f", uint64(0x1000)}},
		{abParam, []any{"s", ref(4)}},
		{0, nil},
	}
	for i := 0; i < levels; i++ {
		at := len(dies)
		next := ref(at + 4) // the next struct: after this one, its two members and its end
		dies = append(dies,
			die{abStruct, []any{"S", uint8(8)}},
			die{abMember, []any{"a", next, int64(0)}},
			die{abMember, []any{"b", next, int64(0)}},
			die{0, nil})
	}
	dies = append(dies, die{abStruct, []any{"empty", uint8(0)}}, die{0, nil}, die{0, nil})
	g, c := paramsOf(t, craftDWARF(t, dies))
	if len(g) != 1 || !strings.Contains(g[0].Problem, "too complex") {
		t.Errorf("Go parameters %+v", g)
	}
	if len(c) != 1 || !strings.Contains(c[0].Problem, "too complex") {
		t.Errorf("C parameters %+v", c)
	}
}

// TestNegativeMemberOffset: a member at offset -8 of a small struct is no index into the
// eightbyte classes.
func TestNegativeMemberOffset(t *testing.T) {
	d := craftDWARF(t, []die{
		{abCU, []any{uint8(0x0c)}},
		{abSub, []any{"f", uint64(0x1000)}},
		{abParam, []any{"s", ref(4)}},
		{0, nil},
		{abStruct, []any{"neg", uint8(8)}}, // 4
		{abMember, []any{"m", ref(7), int64(-8)}},
		{0, nil},
		{abPtr, []any{ref(7), uint8(8)}}, // 7
		{0, nil},
	})
	_, c := paramsOf(t, d)
	if len(c) != 1 || !strings.Contains(c[0].Problem, "negative offset") {
		t.Fatalf("parameters %+v", c)
	}
}

// TestHugeArrayOfEmpty: an array of 2^62 empty structs in a 16-byte struct is no loop of
// 2^62 iterations.
func TestHugeArrayOfEmpty(t *testing.T) {
	d := craftDWARF(t, []die{
		{abCU, []any{uint8(0x0c)}},
		{abSub, []any{"f", uint64(0x1000)}},
		{abParam, []any{"s", ref(4)}},
		{0, nil},
		{abStruct, []any{"outer", uint8(16)}}, // 4
		{abMember, []any{"arr", ref(7), int64(0)}},
		{0, nil},
		{abArray, []any{ref(10), uint8(0)}}, // 7
		{abRange, []any{uint64(1 << 62)}},
		{0, nil},
		{abStruct, []any{"empty", uint8(0)}}, // 10
		{0, nil},
		{0, nil},
	})
	paramsOf(t, d)
}
