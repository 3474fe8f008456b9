// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// CPython's `audit` USDT probe: every audit event of a traced Python process (socket.connect,
// open, subprocess.Popen, urllib.Request, ...) with its name, its arguments decoded one level
// deep, and the Python stack at that moment. The probe runs with the GIL held, inside
// PySys_Audit, so the thread state is the GIL holder's and every object is alive.
//
// The attach cookie is the interpreter binary's index in python_binaries, which says where the
// probe's two arguments are (its ELF note's argument spec) and which layout the binary has.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../common/python.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define PY_TOP_ITEMS 8    // arguments decoded
#define PY_CONTAINERS 4   // arguments whose items are decoded too
#define PY_CHILD_ITEMS 8  // items per container (dicts: 4 key/value pairs)

#define TPF_LONG (1UL << 24)
#define TPF_LIST (1UL << 25)
#define TPF_TUPLE (1UL << 26)
#define TPF_BYTES (1UL << 27)
#define TPF_UNICODE (1UL << 28)
#define TPF_DICT (1UL << 29)

struct regs_all {
	__u64 r[REG_COUNT];
};

static __always_inline void snapshot_all(struct pt_regs *ctx, struct regs_all *s)
{
	s->r[REG_NONE] = 0;
	s->r[REG_RAX] = ctx->ax;
	s->r[REG_RBX] = ctx->bx;
	s->r[REG_RCX] = ctx->cx;
	s->r[REG_RDX] = ctx->dx;
	s->r[REG_RSI] = ctx->si;
	s->r[REG_RDI] = ctx->di;
	s->r[REG_R8] = ctx->r8;
	s->r[REG_R9] = ctx->r9;
	s->r[REG_R10] = ctx->r10;
	s->r[REG_R11] = ctx->r11;
	s->r[REG_R12] = ctx->r12;
	s->r[REG_R13] = ctx->r13;
	s->r[REG_R14] = ctx->r14;
	s->r[REG_R15] = ctx->r15;
	s->r[REG_RBP] = ctx->bp;
	s->r[REG_RSP] = ctx->sp;
}

static __always_inline __u64 usdt_value(struct regs_all *regs, struct usdt_arg *a)
{
	__u8 reg = a->reg;
	__u64 base = reg < REG_COUNT ? regs->r[reg] : 0;
	__u64 v = 0;
	switch (a->kind) {
	case USDT_ARG_CONST:
		return (__u64)a->offset;
	case USDT_ARG_REG:
		v = base;
		break;
	case USDT_ARG_MEM:
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(base + a->offset)) < 0)
			return 0;
		break;
	default:
		return 0;
	}
	switch (a->size) {
	case 1:
		return a->is_signed ? (__u64)(__s64)(__s8)v : (v & 0xff);
	case 2:
		return a->is_signed ? (__u64)(__s64)(__s16)v : (v & 0xffff);
	case 4:
		return a->is_signed ? (__u64)(__s64)(__s32)v : (v & 0xffffffff);
	}
	return v;
}

// A container whose items are decoded after the arguments.
struct container {
	__u64 items;   // tuple/list: the item array; dict: the entry array
	__u64 values;  // split dict: the values array, else 0
	__u32 count;   // pointers to read (dicts: 2 per entry)
	__u32 esize;   // dict entry size (16 or 24), 8 for arrays
	__u32 koff;    // dict: offset of the key in an entry
	__u8 kind;     // enum py_type
	__u8 parent;   // value index of the container
	__u8 _pad[2];
};

// Cursors live in this map value rather than in registers: the verifier does not track map
// contents, so loop iterations do not multiply its states.
struct walk_state {
	struct container c[PY_CONTAINERS];
	__u64 top[PY_TOP_ITEMS];
	__u32 nc; // containers found
	__u32 ci; // container being expanded
	__u32 j;  // next item of that container
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_state);
} walk_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct python_audit_event);
} audit_scratch SEC(".maps");

// py_decode_value fills v from one object and returns its type. A global function: the
// verifier checks it once, not once per argument slot.
__attribute__((noinline)) int py_decode_value(struct python_layout *l, __u64 obj, struct py_value *v)
{
	if (!l || !v)
		return PY_T_OTHER;
	int failed = 0;
	v->num = 0;
	v->len = 0;
	v->flags = 0;
	v->kind = 0;
	v->ascii = 0;
	v->captured = 0;
	v->type = PY_T_OTHER;
	if (!obj) {
		v->flags = PY_V_READ_FAILED;
		return PY_T_OTHER;
	}
	__u64 type = py_read_ptr(obj + l->object_type, &failed);
	__u64 flags = py_read_ptr(type + l->type_flags, &failed);
	__u64 name = py_read_ptr(type + l->type_name, &failed);
	if (failed) {
		v->flags = PY_V_READ_FAILED;
		return PY_T_OTHER;
	}
	__s64 size = (__s64)py_read_ptr(obj + l->var_size, &failed);
	if (flags & TPF_UNICODE) {
		__u32 state = 0;
		bpf_probe_read_user(&state, sizeof(state), (void *)(obj + l->unicode_state));
		__s64 length = (__s64)py_read_ptr(obj + l->unicode_length, &failed);
		v->type = PY_T_STR;
		v->len = length < 0 ? 0 : (__u32)length;
		__u8 kind = (state >> 2) & 7;
		__u8 compact = (state >> 5) & 1;
		__u8 ascii = (state >> 6) & 1;
		v->kind = kind;
		v->ascii = ascii;
		if (!compact || !(kind == 1 || kind == 2 || kind == 4)) {
			v->flags = PY_V_UNSUPPORTED;
			return PY_T_STR;
		}
		__u64 data = obj + (ascii ? l->unicode_ascii_data : l->unicode_compact_data);
		__u64 nbytes = (__u64)v->len * kind;
		if (nbytes > PY_VALUE_BYTES) {
			nbytes = PY_VALUE_BYTES;
			v->flags |= PY_V_TRUNCATED;
		}
		if (nbytes && bpf_probe_read_user(v->data, nbytes, (void *)data) < 0) {
			v->flags |= PY_V_READ_FAILED;
			return PY_T_STR;
		}
		v->captured = nbytes;
		return PY_T_STR;
	}
	if (flags & TPF_BYTES) {
		v->type = PY_T_BYTES;
		v->len = size < 0 ? 0 : (__u32)size;
		__u64 nbytes = v->len;
		if (nbytes > PY_VALUE_BYTES) {
			nbytes = PY_VALUE_BYTES;
			v->flags |= PY_V_TRUNCATED;
		}
		if (nbytes && bpf_probe_read_user(v->data, nbytes, (void *)(obj + l->bytes_data)) < 0) {
			v->flags |= PY_V_READ_FAILED;
			return PY_T_BYTES;
		}
		v->captured = nbytes;
		return PY_T_BYTES;
	}
	if (flags & TPF_LONG) {
		v->type = PY_T_INT;
		int negative = size < 0;
		__s64 ndigits = size < 0 ? -size : size;
		if (l->long_tagged) {
			// lv_tag: digit count << 3 | sign (0 positive, 1 zero, 2 negative).
			negative = ((__u64)size & 3) == 2;
			ndigits = ((__u64)size & 3) == 1 ? 0 : (__s64)((__u64)size >> 3);
		}
		if (ndigits > 2) {
			v->flags = PY_V_UNSUPPORTED;
		} else {
			__u32 d[2] = {};
			bpf_probe_read_user(d, ndigits * 4 > 8 ? 8 : ndigits * 4, (void *)(obj + l->long_digits));
			__s64 val = (__s64)d[0] | ((__s64)(ndigits > 1 ? d[1] : 0) << 30);
			v->num = negative ? -val : val;
		}
		// bool is the only int subclass the interpreter's audit events pass.
		char tn[8] = {};
		bpf_probe_read_user_str(tn, sizeof(tn), (void *)name);
		if (tn[0] == 'b' && tn[1] == 'o' && tn[2] == 'o' && tn[3] == 'l' && tn[4] == 0)
			v->type = PY_T_BOOL;
		return v->type;
	}
	if (flags & (TPF_TUPLE | TPF_LIST | TPF_DICT)) {
		v->type = flags & TPF_TUPLE ? PY_T_TUPLE : (flags & TPF_LIST ? PY_T_LIST : PY_T_DICT);
		if (v->type == PY_T_DICT) {
			// ma_used: live entries.
			size = (__s64)py_read_ptr(obj + 16, &failed);
		}
		v->len = size < 0 ? 0 : (__u32)size;
		return v->type;
	}
	long n = bpf_probe_read_user_str(v->data, 32, (void *)name);
	if (n > 0) {
		v->captured = n - 1;
		if (n == 9 && v->data[0] == 'N' && v->data[4] == 'T')
			v->type = PY_T_NONE; // "NoneType"
	}
	return v->type;
}

// add_container records where a tuple's, list's or dict's items are.
static __always_inline void add_container(struct python_layout *l, __u64 obj, int t, int idx, struct py_value *v, struct container *c)
{
	int failed = 0;
	c->kind = t;
	c->parent = idx;
	c->values = 0;
	c->esize = 8;
	c->koff = 0;
	__u32 items = v->len;
	if (t == PY_T_TUPLE) {
		c->items = obj + l->tuple_items;
	} else if (t == PY_T_LIST) {
		c->items = py_read_ptr(obj + l->list_items, &failed);
	} else {
		__u64 keys = py_read_ptr(obj + l->dict_keys, &failed);
		__u8 log2ib = 0, kind = 0;
		bpf_probe_read_user(&log2ib, 1, (void *)(keys + l->keys_log2_index_bytes));
		bpf_probe_read_user(&kind, 1, (void *)(keys + l->keys_kind));
		__s64 nentries = (__s64)py_read_ptr(keys + l->keys_nentries, &failed);
		c->items = keys + l->keys_indices + (1ULL << (log2ib & 31));
		c->values = py_read_ptr(obj + l->dict_values, &failed);
		c->esize = kind == 0 ? 24 : 16;
		c->koff = kind == 0 ? 8 : 0;
		items = nentries < 0 ? 0 : (__u32)nentries * 2;
	}
	if (items > PY_CHILD_ITEMS) {
		items = PY_CHILD_ITEMS;
		v->flags |= PY_V_TRUNCATED;
	}
	c->count = failed ? 0 : items;
}

SEC("uprobe/python_audit")
int python_audit(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!traced(tgid))
		return 0;
	__u32 bin = (__u32)bpf_get_attach_cookie(ctx);
	struct python_binary *b = bpf_map_lookup_elem(&python_binaries, &bin);
	if (!b)
		return 0;
	struct regs_all regs;
	snapshot_all(ctx, &regs);
	__u64 event_name = usdt_value(&regs, &b->args[0]);
	__u64 args = usdt_value(&regs, &b->args[1]);

	__u32 layout_id = b->layout;
	struct python_layout *l = 0;
	if (layout_id)
		l = bpf_map_lookup_elem(&python_layouts, &layout_id);
	if (l) {
		struct python_proc *p = bpf_map_lookup_elem(&python_procs, &tgid);
		if (!p && b->runtime_vaddr) {
			// The probe's run-time address minus its link-time address is the load bias.
			struct python_proc np = {.runtime = b->runtime_vaddr + (PT_REGS_IP(ctx) - b->probe_vaddr), .layout = layout_id};
			bpf_map_update_elem(&python_procs, &tgid, &np, BPF_NOEXIST);
		}
		emit_python_stack(tgid, tid, 1, PY_SAMPLE_FOR_NEXT);
	}

	__u32 zero = 0;
	struct python_audit_event *e = bpf_map_lookup_elem(&audit_scratch, &zero);
	if (!e)
		return 0;
	fill_header(&e->hdr, EVENT_PYTHON_AUDIT, 0, bin);
	e->name_len = 0;
	e->nvalues = 0;
	e->nargs = 0;
	e->args_flags = 0;
	long n = bpf_probe_read_user_str(e->name, AUDIT_NAME_BYTES, (void *)event_name);
	if (n > 0)
		e->name_len = n - 1;
	struct walk_state *w = bpf_map_lookup_elem(&walk_scratch, &zero);
	if (!l || !args || !w)
		goto send;
	int failed = 0;
	__s64 nargs = (__s64)py_read_ptr(args + l->var_size, &failed);
	if (failed || nargs < 0) {
		e->args_flags = PY_V_READ_FAILED;
		goto send;
	}
	e->nargs = nargs;
	__u32 ntop = nargs > PY_TOP_ITEMS ? PY_TOP_ITEMS : (__u32)nargs;
	if (nargs > PY_TOP_ITEMS)
		e->args_flags = PY_V_TRUNCATED;
	if (ntop && bpf_probe_read_user(w->top, ntop * 8, (void *)(args + l->tuple_items)) < 0) {
		e->args_flags = PY_V_READ_FAILED;
		goto send;
	}

	// The arguments, and the containers among them.
	w->nc = 0;
	for (int i = 0; i < PY_TOP_ITEMS; i++) {
		if (i >= ntop)
			break;
		struct py_value *v = &e->values[i];
		int t = py_decode_value(l, w->top[i], v);
		v->parent = 0xff;
		e->nvalues = i + 1;
		if (t != PY_T_TUPLE && t != PY_T_LIST && t != PY_T_DICT)
			continue;
		__u32 nc = w->nc;
		if (nc >= PY_CONTAINERS)
			continue;
		struct container *c = &w->c[nc];
		w->nc = nc + 1;
		add_container(l, w->top[i], t, i, v, c);
	}

	// Their items, container by container, while values are left.
	w->ci = 0;
	w->j = 0;
	for (int k = 0; k < PY_VALUES; k++) {
		__u32 ci = w->ci, nv = e->nvalues;
		if (ci >= w->nc || ci >= PY_CONTAINERS || nv >= PY_VALUES)
			break;
		struct container *c = &w->c[ci];
		__u32 j = w->j;
		if (j >= c->count) {
			w->ci = ci + 1;
			w->j = 0;
			continue;
		}
		w->j = j + 1;
		__u64 ptr = 0;
		if (c->kind == PY_T_DICT) {
			__u64 entry = c->items + (__u64)(j >> 1) * c->esize + c->koff;
			if (!(j & 1))
				bpf_probe_read_user(&ptr, sizeof(ptr), (void *)entry);
			else if (c->values)
				bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(c->values + (__u64)(j >> 1) * 8));
			else
				bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(entry + 8));
			if (!(j & 1) && !ptr) {
				w->j = j + 2; // a deleted entry
				continue;
			}
		} else {
			bpf_probe_read_user(&ptr, sizeof(ptr), (void *)(c->items + (__u64)j * 8));
		}
		struct py_value *v = &e->values[nv];
		py_decode_value(l, ptr, v);
		v->parent = c->parent;
		e->nvalues = nv + 1;
	}
send:
	output(e, offsetof(struct python_audit_event, values) + (__u64)e->nvalues * sizeof(struct py_value), sizeof(*e));
	return 0;
}

// Coroutine ends. A configured coroutine's reconstructed span stays open across its awaits (its
// frame lives inside the coroutine object, so every resumption shows the same frame address) and
// ends when the object is freed: at gen_dealloc, the tp_dealloc of PyCoro_Type. No stack sample
// can say it: every sample sees the coroutine running, and a freed coroutine's address is taken
// by the next one of the same function. gen_dealloc is static (user space reads its address from
// PyCoro_Type's tp_dealloc slot) and frees generators and async generators too, so the program
// keeps only the objects whose frame runs one of the configured coroutines' code objects, which
// user space registers per process in python_coro_codes as it finds them on stacks. The probe is
// attached per process (a pid-filtered uprobe), so untraced interpreters do not take the trap.
//
// The attach cookie says where to read (pyinfo's generator layout of the binary's version):
// bits 0-15 the offset of the _PyInterpreterFrame in the object, 16-31 that of gi_frame_state,
// 32-47 that of the frame's code object (f_code, f_executable).

#define PY_MAX_CORO_CODES 4096

struct python_coro_code {
	__u32 tgid;
	__u32 _pad;
	__u64 code; // a configured coroutine's code object in that process
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PY_MAX_CORO_CODES);
	__type(key, struct python_coro_code);
	__type(value, __u8);
} python_coro_codes SEC(".maps");

enum py_coro_flags {
	PY_CORO_STATE_UNREAD = 1, // gi_frame_state could not be read (state is 0)
};

// EVENT_PYTHON_CORO_END: a configured coroutine object is being freed.
struct python_coro_end_event {
	struct event_header hdr;
	__u64 frame; // its frame: the object's address plus the frame offset, as stack samples show it
	__u64 code;  // the frame's code object
	__s8 state;  // gi_frame_state at gen_dealloc's entry: suspended (never finished) or cleared
	__u8 flags;  // enum py_coro_flags
	__u8 _pad[6];
};

SEC("uprobe/python_gen_dealloc")
int python_gen_dealloc(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 obj = PT_REGS_PARM1(ctx);
	__u64 frame = obj + (cookie & 0xffff);
	struct python_coro_code key = {.tgid = bpf_get_current_pid_tgid() >> 32};
	// A cleared frame keeps its code pointer (the reference is dropped, the field not zeroed).
	if (bpf_probe_read_user(&key.code, sizeof(key.code), (void *)(frame + ((cookie >> 32) & 0xffff))) < 0)
		return 0;
	if (!bpf_map_lookup_elem(&python_coro_codes, &key))
		return 0;
	struct python_coro_end_event e = {};
	fill_header(&e.hdr, EVENT_PYTHON_CORO_END, 0, 0);
	e.frame = frame;
	e.code = key.code;
	if (bpf_probe_read_user(&e.state, sizeof(e.state), (void *)(obj + ((cookie >> 16) & 0xffff))) < 0)
		e.flags = PY_CORO_STATE_UNREAD;
	output(&e, sizeof(e), sizeof(e));
	return 0;
}

const struct python_audit_event *unused_python_audit_event __attribute__((unused));
const struct python_stack_event *unused_python_stack_event __attribute__((unused));
const struct python_layout *unused_python_layout __attribute__((unused));
const struct python_binary *unused_python_binary __attribute__((unused));
const struct python_proc *unused_python_proc __attribute__((unused));
const enum py_stack_status *unused_py_stack_status __attribute__((unused));
const enum py_type *unused_py_type __attribute__((unused));
const enum py_value_flags *unused_py_value_flags __attribute__((unused));
const enum usdt_arg_kind *unused_usdt_arg_kind __attribute__((unused));
const enum py_sample *unused_py_sample __attribute__((unused));
const struct python_coro_end_event *unused_python_coro_end_event __attribute__((unused));
const struct python_coro_code *unused_python_coro_code __attribute__((unused));
const enum py_coro_flags *unused_py_coro_flags __attribute__((unused));
