// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Function probes: entry and return of configured functions in Go and native programs, and the
// goroutine creation that lets user space parent a goroutine's work under the caller's span.
//
// Go functions get a uprobe on their entry and on every RET instruction (never a uretprobe:
// it rewrites the return address on the stack, which Go's stack growth and traceback do not
// survive). Native functions get a uprobe and a uretprobe. The attach cookie is the probe id.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "../common/maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// Pointer to the creating goroutine, saved at runtime.newproc1's entry and read at its return.
// newproc1 runs on the system stack, where R14 holds g0, so the argument is the only reliable
// source of the parent; keyed by thread because the function does not switch goroutines.
// This entry + return pair is the fallback of go_newproc1_ret (below) for a binary whose DWARF
// does not give the runtime's structure offsets (built with -ldflags=-w, or stripped).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} newproc_callers SEC(".maps");

// Argument registers at entry, indexed by enum reg_id. Copied once with constant offsets: a
// switch over ctx fields compiles to a computed ctx offset, which the verifier rejects.
struct regs_snapshot {
	__u64 r[REG_R11 + 1];
};

static __always_inline void snapshot_regs(struct pt_regs *ctx, struct regs_snapshot *s)
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
}

static __always_inline __u64 read_reg(struct regs_snapshot *s, __u8 reg)
{
	if (reg > REG_R11)
		return 0;
	return s->r[reg];
}

static __always_inline __u64 routine_of(struct pt_regs *ctx, __u8 is_go)
{
	// Go's register ABI keeps the current g in R14 on amd64.
	return is_go ? ctx->r14 : 0;
}

static __always_inline void capture_arg(struct regs_snapshot *ctx, struct arg_spec *spec, struct func_arg *out)
{
	out->kind = spec->kind;
	out->flags = 0;
	out->captured = 0;
	__u64 v = read_reg(ctx, spec->reg0);
	switch (spec->kind) {
	case ARG_INT:
	case ARG_UINT:
	case ARG_BOOL:
		out->num = v;
		return;
	case ARG_STRING:
	case ARG_BYTES_: {
		__u64 len = read_reg(ctx, spec->reg1);
		out->num = len;
		__u32 n = len > ARG_BYTES ? ARG_BYTES : (__u32)len;
		if (len > ARG_BYTES)
			out->flags |= ARG_FLAG_TRUNCATED;
		if (n == 0)
			return;
		if (bpf_probe_read_user(out->data, n, (void *)v) < 0) {
			out->flags |= ARG_FLAG_READ_FAILED;
			return;
		}
		out->captured = n;
		return;
	}
	case ARG_CSTRING: {
		long n = bpf_probe_read_user_str(out->data, ARG_BYTES, (void *)v);
		if (n < 0) {
			out->flags |= ARG_FLAG_READ_FAILED;
			return;
		}
		// n counts the NUL; a full buffer means the string may go on.
		if (n == ARG_BYTES)
			out->flags |= ARG_FLAG_TRUNCATED;
		out->captured = n > 0 ? n - 1 : 0;
		out->num = out->captured;
		return;
	}
	}
}

SEC("uprobe/func_entry")
int func_entry(struct pt_regs *ctx)
{
	struct traced_process *proc = traced(bpf_get_current_pid_tgid() >> 32);
	if (!proc)
		return 0;
	__u32 probe_id = (__u32)bpf_get_attach_cookie(ctx);
	struct probe_spec *spec = bpf_map_lookup_elem(&probe_specs, &probe_id);
	if (!spec)
		return 0;
	__u64 routine = routine_of(ctx, spec->is_go);

	if (spec->nargs == 0) {
		struct func_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_drop(DROP_RINGBUF_FULL);
			return 0;
		}
		fill_header(&e->hdr, EVENT_FUNC_ENTRY, routine, probe_id);
		submit(e);
		return 0;
	}

	struct func_args_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_FUNC_ENTRY, routine, probe_id);
	struct regs_snapshot regs;
	snapshot_regs(ctx, &regs);
#pragma unroll
	for (int i = 0; i < MAX_ARGS; i++) {
		if (i < spec->nargs)
			capture_arg(&regs, &spec->args[i], &e->args[i]);
		else
			e->args[i].kind = ARG_NONE;
	}
	submit(e);
	return 0;
}

// Attached to every RET of a Go function, and as a uretprobe to native functions.
SEC("uprobe/func_return")
int func_return(struct pt_regs *ctx)
{
	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 0;
	__u32 probe_id = (__u32)bpf_get_attach_cookie(ctx);
	struct probe_spec *spec = bpf_map_lookup_elem(&probe_specs, &probe_id);
	if (!spec)
		return 0;
	struct func_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_FUNC_RETURN, routine_of(ctx, spec->is_go), probe_id);
	submit(e);
	return 0;
}

// runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr, ...) *g
SEC("uprobe/go_newproc1")
int go_newproc1(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	__u64 caller = ctx->bx;
	bpf_map_update_elem(&newproc_callers, &tid, &caller, BPF_ANY);
	return 0;
}

SEC("uprobe/go_newproc1_return")
int go_newproc1_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	__u64 *caller = bpf_map_lookup_elem(&newproc_callers, &tid);
	if (!caller) {
		count_drop(DROP_NEWPROC_UNPAIRED);
		return 0;
	}
	struct goroutine_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		bpf_map_delete_elem(&newproc_callers, &tid);
		return 0;
	}
	fill_header(&e->hdr, EVENT_GOROUTINE_CREATE, *caller, 0);
	e->child = ctx->ax; // the new g
	submit(e);
	bpf_map_delete_elem(&newproc_callers, &tid);
	return 0;
}

// One probe per goroutine creation instead of two, where user space found the runtime's
// structure offsets in the binary's DWARF (packed in the attach cookie: g.m in the high half,
// m.curg in the low half). Attached to runtime.newproc1's RETs only. newproc1 runs on the
// system stack (newproc and newcoro call it through systemstack), so R14 holds g0 of the
// thread's M; the M's curg is still the goroutine that asked for the new one. Each uprobe hit
// is a trap that costs far more than this program, so dropping the entry probe halves the
// cost of a goroutine creation in a traced Go process.
SEC("uprobe/go_newproc1_ret")
int go_newproc1_ret(struct pt_regs *ctx)
{
	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 0;
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 g_m = cookie >> 32, m_curg = (__u32)cookie;
	__u64 m = 0, caller = 0;
	if (!ctx->r14 || bpf_probe_read_user(&m, sizeof(m), (void *)(ctx->r14 + g_m)) < 0 || !m ||
	    bpf_probe_read_user(&caller, sizeof(caller), (void *)(m + m_curg)) < 0 || !caller) {
		count_drop(DROP_NEWPROC_UNPAIRED);
		return 0;
	}
	struct goroutine_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_GOROUTINE_CREATE, caller, 0);
	e->child = ctx->ax; // the new g
	submit(e);
	return 0;
}

// Anchor the record types so bpf2go -type can generate them.
const struct func_event *unused_func_event __attribute__((unused));
const struct func_args_event *unused_func_args_event __attribute__((unused));
const struct probe_spec *unused_probe_spec __attribute__((unused));
const struct traced_process *unused_traced_process __attribute__((unused));
const struct goroutine_event *unused_goroutine_event __attribute__((unused));
// The enums too, so that the Go side's constants are generated rather than copied.
const enum event_kind *unused_event_kind __attribute__((unused));
const enum arg_kind *unused_arg_kind __attribute__((unused));
const enum arg_flags *unused_arg_flags __attribute__((unused));
const enum reg_id *unused_reg_id __attribute__((unused));
