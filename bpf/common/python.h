// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// CPython support shared by the probe families: the interpreter layouts user space loads (one per
// supported version), the interpreters and processes seen so far, and the frame walker that sends
// a thread's Python stack as an EVENT_PYTHON_STACK record.
//
// The walker copies only code object addresses and instruction offsets; user space resolves
// names, files and lines by reading the process's memory, cached by code object. A thread's
// PyThreadState is found by its pthread identity (PyThreadState.thread_id == pthread_self(),
// which on x86-64 is the thread's FS base), so it works with the GIL released (in a syscall, in
// SSL_read) and inside PID namespaces.
#pragma once

#include <bpf/bpf_core_read.h>
#include "maps.h"

#ifndef offsetof
#define offsetof(T, M) __builtin_offsetof(T, M)
#endif

#define PY_MAX_LAYOUTS 16
#define PY_MAX_BINARIES 256
#define PY_MAX_THREADS 64 // thread states scanned to find the current thread's
#define PY_NONE_OFFSET 0xffffffff
#define PY_FRAME_WINDOW 128 // bytes of a frame read at once, at most (a power of two: indices are masked)

// Offsets into one CPython version's structures (0xffffffff: the field does not exist).
struct python_layout {
	__u32 runtime_tstate_current; // _PyRuntime: the thread state holding the GIL
	__u32 runtime_interp_head;    // _PyRuntime: interpreters.head
	__u32 interp_threads_head;    // PyInterpreterState: threads.head
	__u32 tstate_next;            // PyThreadState: next
	__u32 tstate_thread_id;       // PyThreadState: thread_id (pthread_self())
	__u32 tstate_frame;           // PyThreadState: cframe (3.11) or current_frame
	__u32 cframe_current_frame;   // _PyCFrame: current_frame; PY_NONE_OFFSET when tstate_frame is the frame
	__u32 frame_code;             // _PyInterpreterFrame: f_code / f_executable
	__u32 frame_previous;
	__u32 frame_prev_instr;
	__u32 frame_owner;            // PY_NONE_OFFSET: no shim frames to skip
	__u32 code_bytecode;          // PyCodeObject: co_code_adaptive (start of the bytecode)
	__u32 object_type;            // PyObject: ob_type
	__u32 var_size;               // PyVarObject: ob_size
	__u32 type_name;              // PyTypeObject: tp_name
	__u32 type_flags;             // PyTypeObject: tp_flags
	__u32 unicode_length;
	__u32 unicode_state;
	__u32 unicode_ascii_data;     // sizeof(PyASCIIObject)
	__u32 unicode_compact_data;   // sizeof(PyCompactUnicodeObject)
	__u32 bytes_data;             // PyBytesObject: ob_sval
	__u32 tuple_items;            // PyTupleObject: ob_item
	__u32 list_items;             // PyListObject: ob_item (a pointer)
	__u32 long_digits;            // PyLongObject: ob_digit (30-bit digits, sign in ob_size)
	__u32 dict_keys;              // PyDictObject: ma_keys
	__u32 dict_values;            // PyDictObject: ma_values
	__u32 keys_log2_index_bytes;  // PyDictKeysObject: dk_log2_index_bytes
	__u32 keys_kind;              // PyDictKeysObject: dk_kind (0: general entries with hash)
	__u32 keys_nentries;          // PyDictKeysObject: dk_nentries
	__u32 keys_indices;           // PyDictKeysObject: dk_indices
	__u32 frame_window;           // _PyInterpreterFrame: start of the bytes read per frame
	__u8 frame_owner_cstack;      // owner value of shim frames
	__u8 code_unit_shift;         // log2 of the bytes per instruction unit
	__u8 frame_window_size;       // bytes read per frame (at most PY_FRAME_WINDOW), covering code, previous, prev_instr (and owner)
	__u8 long_tagged;             // 3.12+: ints keep sign and digit count in lv_tag (at var_size)
};

enum usdt_arg_kind {
	USDT_ARG_NONE = 0,
	USDT_ARG_CONST = 1, // $value
	USDT_ARG_REG = 2,   // %reg
	USDT_ARG_MEM = 3,   // offset(%reg)
};

// One USDT argument as its ELF note describes it (internal/usdt parses the spec).
struct usdt_arg {
	__s64 offset;   // memory offset, or the constant
	__u8 kind;      // enum usdt_arg_kind
	__u8 reg;       // enum reg_id
	__u8 size;      // bytes
	__u8 is_signed;
	__u32 _pad;
};

// An interpreter binary (python3.X executable or libpython) with an attached audit probe; its
// index is the probe's attach cookie.
struct python_binary {
	__u64 probe_vaddr;   // link-time address of the audit probe
	__u64 runtime_vaddr; // link-time address of _PyRuntime
	__u32 layout;        // index into python_layouts; 0: unknown version (no Python frames)
	__u32 _pad;
	struct usdt_arg args[2]; // audit(const char *event, PyObject *args)
};

// A traced process known to run CPython.
struct python_proc {
	__u64 runtime; // run-time address of _PyRuntime
	__u32 layout;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PY_MAX_LAYOUTS);
	__type(key, __u32);
	__type(value, struct python_layout);
} python_layouts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PY_MAX_BINARIES);
	__type(key, __u32);
	__type(value, struct python_binary);
} python_binaries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TRACED_PROCESSES);
	__type(key, __u32); // tgid
	__type(value, struct python_proc);
} python_procs SEC(".maps");

// Thread id → its PyThreadState, checked against the thread's identity before every use.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} python_threads SEC(".maps");

// A Python stack under construction, and the bytes of the frame being read.
struct python_scratch {
	struct python_stack_event e;
	__u8 window[PY_FRAME_WINDOW];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct python_scratch);
} python_stack_scratch SEC(".maps");

// Set by user space before load: walk Python stacks at all.
volatile const __u8 python_stacks = 0;

static __always_inline __u64 py_read_ptr(__u64 addr, int *failed)
{
	__u64 v = 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr) < 0)
		*failed = 1;
	return v;
}

// The FS base of the current thread: pthread_self() for glibc and musl on x86-64.
static __always_inline __u64 current_pthread(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, thread.fsbase);
}

// python_thread_state finds the current thread's PyThreadState: from the cache, from the GIL
// holder when the caller knows it holds the GIL, else by scanning the interpreter's threads.
static __always_inline __u64 python_thread_state(struct python_layout *l, struct python_proc *p, __u32 tid, int gil_held)
{
	int failed = 0;
	__u64 self = current_pthread();
	__u64 *cached = bpf_map_lookup_elem(&python_threads, &tid);
	if (cached && *cached) {
		__u64 ts = *cached;
		if (py_read_ptr(ts + l->tstate_thread_id, &failed) == self && !failed)
			return ts;
		bpf_map_delete_elem(&python_threads, &tid);
		failed = 0;
	}
	__u64 ts = 0;
	if (gil_held && l->runtime_tstate_current != PY_NONE_OFFSET) {
		ts = py_read_ptr(p->runtime + l->runtime_tstate_current, &failed);
		if (ts && py_read_ptr(ts + l->tstate_thread_id, &failed) != self)
			ts = 0;
	}
	if (!ts) {
		__u64 interp = py_read_ptr(p->runtime + l->runtime_interp_head, &failed);
		__u64 cur = interp ? py_read_ptr(interp + l->interp_threads_head, &failed) : 0;
		if (failed)
			cur = 0;
		__u32 id_off = l->tstate_thread_id, next_off = l->tstate_next;
		for (int i = 0; i < PY_MAX_THREADS; i++) {
			if (!cur)
				break;
			__u64 thread_id = 0;
			if (bpf_probe_read_user(&thread_id, sizeof(thread_id), (void *)(cur + id_off)) < 0)
				break;
			if (thread_id == self) {
				ts = cur;
				break;
			}
			if (bpf_probe_read_user(&cur, sizeof(cur), (void *)(cur + next_off)) < 0)
				break;
		}
	}
	if (ts)
		bpf_map_update_elem(&python_threads, &tid, &ts, BPF_ANY);
	return ts;
}

// Set by user space before load: also walk a Python thread's stack when it starts to wait for
// input (a socket receive, poll, select, epoll), as a sample of its own (probe id
// PY_SAMPLE_WAIT), so that a thread that serves one request after another is seen between them.
volatile const __u8 python_wait_samples = 0;

// probe_id of a Python stack record: PY_SAMPLE_FOR_NEXT belongs to the record that follows it
// on the thread; PY_SAMPLE_WAIT stands alone.
enum py_sample {
	PY_SAMPLE_FOR_NEXT = 0,
	PY_SAMPLE_WAIT = 1,
};

// emit_python_stack sends the current thread's Python stack, if the process runs a known
// CPython. gil_held: the caller runs inside the interpreter with the GIL (the audit probe).
static __always_inline void emit_python_stack(__u32 tgid, __u32 tid, int gil_held, __u32 sample)
{
	if (!python_stacks)
		return;
	struct python_proc *p = bpf_map_lookup_elem(&python_procs, &tgid);
	if (!p)
		return;
	__u32 layout_id = p->layout;
	struct python_layout *l = bpf_map_lookup_elem(&python_layouts, &layout_id);
	if (!l || layout_id == 0)
		return;
	__u32 zero = 0;
	struct python_scratch *sc = bpf_map_lookup_elem(&python_stack_scratch, &zero);
	if (!sc)
		return;
	struct python_stack_event *e = &sc->e;
	fill_header(&e->hdr, EVENT_PYTHON_STACK, 0, sample);
	e->layout = layout_id;
	e->depth = 0;
	e->status = PY_STACK_OK;
	__u64 ts = python_thread_state(l, p, tid, gil_held);
	if (!ts) {
		count_drop(DROP_PYTHON_STACK);
		e->status = PY_STACK_NO_THREAD;
		output(e, offsetof(struct python_stack_event, frames), sizeof(*e));
		return;
	}
	int failed = 0;
	__u64 frame = py_read_ptr(ts + l->tstate_frame, &failed);
	if (frame && l->cframe_current_frame != PY_NONE_OFFSET)
		frame = py_read_ptr(frame + l->cframe_current_frame, &failed);
	if (failed)
		frame = 0;
	// Kept free of per-iteration state besides the frame pointer, so the verifier's cost stays
	// linear in the depth: every walked frame is stored (a frame without code too, which user
	// space skips), and a failed read ends the walk with the status set. One read per frame
	// (the window holding f_code, previous and prev_instr), fields picked out of it.
	__u64 bytecode = l->code_bytecode;
	__u8 shift = l->code_unit_shift & 7;
	__u32 win = l->frame_window;
	__u32 size = l->frame_window_size & 127;
	if (size > sizeof(sc->window))
		size = sizeof(sc->window);
	__u32 code_at = (l->frame_code - win) & 0x38;
	__u32 prev_at = (l->frame_previous - win) & 0x38;
	__u32 instr_at = (l->frame_prev_instr - win) & 0x38;
	// 3.12+: the C stack's entry frames (owner FRAME_OWNED_BY_CSTACK) are the interpreter's
	// trampoline, not Python code: stored without code, so user space skips them.
	int has_owner = l->frame_owner != PY_NONE_OFFSET;
	__u32 owner_at = (l->frame_owner - win) & (PY_FRAME_WINDOW - 1);
	__u8 cstack = l->frame_owner_cstack;
	for (int i = 0; i < PY_STACK_DEPTH; i++) {
		if (!frame)
			break;
		if (bpf_probe_read_user(sc->window, size, (void *)(frame + win)) < 0) {
			e->status = PY_STACK_READ_FAILED;
			break;
		}
		struct py_frame *f = &e->frames[i];
		__u64 code = *(__u64 *)(sc->window + code_at);
		__u64 instr = *(__u64 *)(sc->window + instr_at);
		if (has_owner && sc->window[owner_at] == cstack)
			code = 0;
		f->code = code;
		f->frame = frame;
		f->lasti = (__s32)(((__s64)instr - (__s64)(code + bytecode)) >> shift);
		f->_pad = 0;
		e->depth = i + 1;
		frame = *(__u64 *)(sc->window + prev_at);
	}
	__u32 n = e->depth;
	if (e->status == PY_STACK_READ_FAILED)
		count_drop(DROP_PYTHON_STACK);
	else if (frame && n >= PY_STACK_DEPTH)
		e->status = PY_STACK_TRUNCATED;
	output(e, offsetof(struct python_stack_event, frames) + (__u64)n * sizeof(struct py_frame), sizeof(*e));
}
