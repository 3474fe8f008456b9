// Package pyinfo knows CPython interpreters: which binary of a process is the interpreter, its
// version, the structure offsets of that version (for the kernel's frame walker and argument
// decoder), and how to turn a code object address and an instruction offset, as the kernel
// sends them, into a qualified function name, a file and a line, by reading the process's memory.
//
// Only versions with a layout here get Python frames; any other version is traced with native
// frames only (the receiver warns once, naming the version). A layout is added only with a test
// against a real interpreter of that version (see receiver_python_test.go).
//
// Why not the OpenTelemetry eBPF profiler (go.opentelemetry.io/ebpf-profiler), which maintains
// interpreter unwinders: its Tracer is a whole-host sampling profiler, not a library that walks
// one stack inside another program's probe. It loads its own collection (perf-event sampling,
// tail-called unwinders, kallsyms), needs tracefs tracepoints (sched_process_free, sys_exit_prctl;
// this receiver uses raw tracepoints only), learns processes from its own sampling and syncs
// their executables' unwind tables before their interpreter frames show, and hands traces to
// its own reporter asynchronously: an audit event or a connect could only be matched to a stack
// by pid, tid and time. Its generic probes attach by symbol, not at a USDT address with a
// semaphore. The part that matters here, the 3.11 offsets, is small and is checked against a
// real interpreter (its 3.11 offsets are the same as these).
package pyinfo

import (
	"slices"

	"github.com/agenttrail/agenttrail/receiver/ebpfreceiver/internal/probes"
)

// Layout is one CPython version's structure offsets.
type Layout struct {
	ID      uint32 // index in the kernel's python_layouts map (1-based)
	Version string // "3.11"
	// Kernel is what the eBPF programs read.
	Kernel probes.PythonLayout
	// Code object fields read in user space.
	CodeFirstLine, CodeFilename, CodeName, CodeQualname, CodeLineTable uint64
	// CodeFlags is co_flags (an int): whether the function is a coroutine.
	CodeFlags uint64
	// Offsets of str and bytes objects.
	UnicodeLength, UnicodeState, UnicodeASCIIData, UnicodeCompactData uint64
	BytesSize, BytesData                                              uint64
	// Gen is the coroutine object (PyCoroObject, PyGenObject's layout) as gen_dealloc sees it.
	Gen GenLayout
}

// GenLayout is where a generator or coroutine object keeps its frame and its state, and the
// state values (Include/internal/pycore_frame.h's enum _framestate) of the version.
type GenLayout struct {
	// Frame: the offset of the _PyInterpreterFrame (gi_iframe) in the object; the frame lives
	// there for the object's life, so stack samples show one frame address per coroutine call.
	Frame uint64
	// FrameState: the offset of gi_frame_state (an int8).
	FrameState uint64
	// Suspended: the states of a coroutine that started and waits at an await (or yield);
	// Created: never started; Completed and Cleared: it returned or raised.
	Suspended          []int8
	Created            int8
	Completed, Cleared int8
}

// CoroutineEnd says how a coroutine freed with gi_frame_state state ended.
func (g GenLayout) CoroutineEnd(state int8) string {
	switch {
	case state == g.Completed || state == g.Cleared:
		return CoroutineCompleted
	case state == g.Created || slices.Contains(g.Suspended, state):
		return CoroutineAbandoned
	}
	return CoroutineStateUnknown
}

// How a coroutine's call ended, as gen_dealloc found its object (agenttrail.python.coroutine.end).
const (
	// CoroutineCompleted: it returned or raised (a cancelled task raised CancelledError inside
	// it): its frame was cleared before the object was freed.
	CoroutineCompleted = "completed"
	// CoroutineAbandoned: the object was freed while suspended at an await (or before it started):
	// nothing resumed it to its end (a task garbage-collected while pending, a coroutine dropped).
	CoroutineAbandoned = "abandoned"
	// CoroutineStateUnknown: a state value the layout does not know (the read went wrong).
	CoroutineStateUnknown = "unknown_state"
)

// gen311 is 3.11's PyGenObject: PyObject_HEAD, gi_code, gi_weakreflist, gi_name, gi_qualname,
// gi_exc_state (2 pointers), gi_origin_or_finalizer, three chars, gi_frame_state, gi_iframe.
var gen311 = GenLayout{Frame: 80, FrameState: 75, Suspended: []int8{-1}, Created: -2, Completed: 1, Cleared: 4}

const none = probes.PyNoneOffset

// python311 is CPython 3.11 on x86-64 (release build), from the 3.11 headers
// (Include/cpython/pystate.h, Include/internal/pycore_frame.h, pycore_runtime.h,
// pycore_interp.h, pycore_dict.h, Include/cpython/code.h, unicodeobject.h), computed with
// offsetof against Debian's python3.11-dev headers and checked against a running interpreter
// by the kernel tests. The same offsets are those of the OpenTelemetry eBPF profiler for 3.11
// (frame: f_code 32, previous 48, prev_instr 56; thread state: cframe 56; cframe: current_frame 8).
var python311 = Layout{
	ID:      1,
	Version: "3.11",
	Kernel: probes.PythonLayout{
		RuntimeTstateCurrent: 576, // _PyRuntime.gilstate.tstate_current
		RuntimeInterpHead:    40,  // _PyRuntime.interpreters.head
		InterpThreadsHead:    16,  // PyInterpreterState.threads.head
		TstateNext:           8,
		TstateThreadId:       152,
		TstateFrame:          56, // PyThreadState.cframe
		CframeCurrentFrame:   8,  // _PyCFrame.current_frame
		FrameCode:            32,
		FramePrevious:        48,
		FramePrevInstr:       56,
		FrameOwner:           none, // 3.11 has no shim frames
		CodeBytecode:         184,  // co_code_adaptive
		ObjectType:           8,
		VarSize:              16,
		TypeName:             24,
		TypeFlags:            168,
		UnicodeLength:        16,
		UnicodeState:         32,
		UnicodeAsciiData:     48, // sizeof(PyASCIIObject)
		UnicodeCompactData:   72, // sizeof(PyCompactUnicodeObject)
		BytesData:            32,
		TupleItems:           24,
		ListItems:            24,
		LongDigits:           24,
		DictKeys:             32,
		DictValues:           40,
		KeysLog2IndexBytes:   9,
		KeysKind:             10,
		KeysNentries:         24,
		KeysIndices:          32,
		CodeUnitShift:        1,  // _Py_CODEUNIT is 2 bytes
		FrameWindow:          32, // f_code .. prev_instr: one read of 32 bytes per frame
		FrameWindowSize:      32,
	},
	CodeFirstLine:      72,
	CodeFlags:          48, // after PyObject_VAR_HEAD, co_consts, co_names, co_exceptiontable
	CodeFilename:       112,
	CodeName:           120,
	CodeQualname:       128,
	CodeLineTable:      136,
	UnicodeLength:      16,
	UnicodeState:       32,
	UnicodeASCIIData:   48,
	UnicodeCompactData: 72,
	BytesSize:          16,
	BytesData:          32,
	Gen:                gen311,
}

// python312 is CPython 3.12 on x86-64 (release build), computed the same way against 3.12's
// headers (pyenv's 3.12.1 installs the internal ones) and checked against a running 3.12 by the
// kernel tests. What changed since 3.11: the thread state holding the GIL is thread-local (no
// _PyRuntime field: the interpreter's threads are scanned), the frame starts with f_code, the
// C stack's entry frames are shim frames (owner 3: the kernel stores them without code, and
// they are left out), strings lost their wstr fields, and ints keep sign and digit count in
// lv_tag.
var python312 = Layout{
	ID:      2,
	Version: "3.12",
	Kernel: probes.PythonLayout{
		RuntimeTstateCurrent: none, // _Py_tss_tstate is thread-local
		RuntimeInterpHead:    40,   // _PyRuntime.interpreters.head
		InterpThreadsHead:    72,   // PyInterpreterState.threads.head
		TstateNext:           8,
		TstateThreadId:       136,
		TstateFrame:          56, // PyThreadState.cframe
		CframeCurrentFrame:   0,  // _PyCFrame.current_frame
		FrameCode:            0,
		FramePrevious:        8,
		FramePrevInstr:       56,
		FrameOwner:           70,
		FrameOwnerCstack:     3,
		CodeBytecode:         192, // co_code_adaptive
		ObjectType:           8,
		VarSize:              16,
		TypeName:             24,
		TypeFlags:            168,
		UnicodeLength:        16,
		UnicodeState:         32,
		UnicodeAsciiData:     40, // sizeof(PyASCIIObject)
		UnicodeCompactData:   56, // sizeof(PyCompactUnicodeObject)
		BytesData:            32,
		TupleItems:           24,
		ListItems:            24,
		LongDigits:           24, // long_value.ob_digit
		DictKeys:             32,
		DictValues:           40,
		KeysLog2IndexBytes:   9,
		KeysKind:             10,
		KeysNentries:         24,
		KeysIndices:          32,
		CodeUnitShift:        1,
		FrameWindow:          0, // f_code .. owner: one read of 72 bytes per frame
		FrameWindowSize:      72,
		LongTagged:           1,
	},
	CodeFirstLine:      68,
	CodeFlags:          48,
	CodeFilename:       112,
	CodeName:           120,
	CodeQualname:       128,
	CodeLineTable:      136,
	UnicodeLength:      16,
	UnicodeState:       32,
	UnicodeASCIIData:   40,
	UnicodeCompactData: 56,
	BytesSize:          16,
	BytesData:          32,
	// 3.12 dropped gi_code (the frame's f_code says it): everything after it moved up 8 bytes.
	Gen: GenLayout{Frame: 72, FrameState: 67, Suspended: []int8{-1}, Created: -2, Completed: 1, Cleared: 4},
}

// python313 is CPython 3.13 on x86-64 (release build with the GIL; not the free-threaded
// "t" build), computed the same way against 3.13's headers (pyenv's 3.13.0) and checked against
// a running 3.13 by the kernel tests: 3.12's layout but for what 3.13 changed. The thread state
// points at its current frame directly (no _PyCFrame), the frame's code is f_executable, and
// instr_ptr, where prev_instr was, is the instruction being executed.
var python313 = func() Layout {
	l := python312
	l.ID, l.Version = 3, "3.13"
	k := &l.Kernel
	k.RuntimeInterpHead = 632 // _PyRuntime.interpreters.head
	k.InterpThreadsHead = 7344
	k.TstateThreadId = 152
	k.TstateFrame = 72 // PyThreadState.current_frame
	k.CframeCurrentFrame = none
	k.CodeBytecode = 200 // co_code_adaptive
	// The generator object is 3.12's, but a suspended frame is FRAME_SUSPENDED (-2) or, at an
	// await or yield from, FRAME_SUSPENDED_YIELD_FROM (-1), and never started is -3.
	l.Gen.Suspended, l.Gen.Created = []int8{-2, -1}, -3
	// f_executable (0), previous (8), instr_ptr (56) and owner (70) are where 3.12 has f_code,
	// previous, prev_instr and owner; objects, strings, ints, dicts and code object fields read
	// in user space are laid out as in 3.12.
	return l
}()

// Layouts are the supported versions, by "major.minor".
var Layouts = map[string]*Layout{
	"3.11": &python311,
	"3.12": &python312,
	"3.13": &python313,
}

// LayoutByID returns the layout with the kernel id, or nil.
func LayoutByID(id uint32) *Layout {
	for _, l := range Layouts {
		if l.ID == id {
			return l
		}
	}
	return nil
}
