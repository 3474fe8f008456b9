// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Syscall and process-lifecycle events of traced processes, from raw tracepoints (they need
// neither tracefs nor kprobes). Every record of a traced process carries the goroutine (Go) or
// thread key and, when enabled, the user call stack that led to the syscall.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "../common/python.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// x86-64 syscall numbers.
#define NR_OPEN_AT 257
#define NR_CONNECT 42
#define NR_ACCEPT 43
#define NR_SENDTO 44
// Where a thread starts to wait for input (Python wait samples).
#define NR_POLL 7
#define NR_SELECT 23
#define NR_RECVFROM 45
#define NR_RECVMSG 47
#define NR_EPOLL_WAIT 232
#define NR_PSELECT6 270
#define NR_PPOLL 271
#define NR_EPOLL_PWAIT 281
#define NR_EPOLL_PWAIT2 441
#define NR_FUTEX 202
#define NR_ACCEPT4 288
#define NR_EXECVE 59
#define NR_EXECVEAT 322
#define NR_CLONE 56
#define NR_FORK 57
#define NR_VFORK 58
#define NR_CLONE3 435

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10

// Bits of syscall_mask, set by user space from the config.
enum traced_syscall {
	TRACE_CONNECT = 1 << 0,
	TRACE_ACCEPT = 1 << 1,
	TRACE_SENDTO = 1 << 2,
	TRACE_EXECVE = 1 << 3,
	TRACE_OPENAT = 1 << 4,
};

static __always_inline int is_wait(long nr)
{
	switch (nr) {
	case NR_POLL:
	case NR_SELECT:
	case NR_RECVFROM:
	case NR_RECVMSG:
	case NR_EPOLL_WAIT:
	case NR_PSELECT6:
	case NR_PPOLL:
	case NR_EPOLL_PWAIT:
	case NR_EPOLL_PWAIT2:
		return 1;
	}
	return 0;
}

// A Python thread blocked on a lock without a timeout: Python's locks are semaphores, and an
// untimed sem_wait is a FUTEX_WAIT_BITSET without a timeout (queue.Queue.get, a condition, a
// thread pool's worker between jobs). Left out: the GIL's waits (timed) and the contention on
// its mutex (pthread_mutex_lock: FUTEX_WAIT), which come thousands of times a second in a busy
// multi-threaded program (measured: 86% of the untimed waits of 8 CPU-bound threads).
#define FUTEX_WAIT_BITSET 9
#define FUTEX_CMD_MASK 127

static __always_inline int is_untimed_lock_wait(struct pt_regs *regs)
{
	int op = BPF_CORE_READ(regs, si) & FUTEX_CMD_MASK;
	return op == FUTEX_WAIT_BITSET && !BPF_CORE_READ(regs, r10);
}

static __always_inline __u32 syscall_bit(long nr)
{
	switch (nr) {
	case NR_CONNECT: return TRACE_CONNECT;
	case NR_ACCEPT:
	case NR_ACCEPT4: return TRACE_ACCEPT;
	case NR_SENDTO: return TRACE_SENDTO;
	case NR_EXECVE:
	case NR_EXECVEAT: return TRACE_EXECVE;
	case NR_OPEN_AT: return TRACE_OPENAT;
	}
	return 0;
}

// The goroutine that is forking, saved at clone/fork entry and read by sched_process_fork (which
// runs in the parent's context but has no user registers), so the child process's work is
// parented under the call that spawned it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} fork_routines SEC(".maps");

static __always_inline int is_fork(long nr)
{
	return nr == NR_CLONE || nr == NR_CLONE3 || nr == NR_FORK || nr == NR_VFORK;
}

struct sockaddr_buf {
	__u16 family;
	__u16 port; // network byte order
	__u32 v4_or_flowinfo;
	__u8 v6[16];
	__u32 scope;
};

// Reads a user sockaddr into family/port/addr; returns the family, or 0.
static __always_inline __u16 read_sockaddr(const void *uaddr, __u16 *port, __u8 addr[16])
{
	struct sockaddr_buf sa = {};
	if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), uaddr) < 0)
		return 0;
	if (sa.family == AF_INET) {
		*port = bpf_ntohs(sa.port);
		__builtin_memcpy(addr, &sa.v4_or_flowinfo, 4);
	} else if (sa.family == AF_INET6) {
		*port = bpf_ntohs(sa.port);
		__builtin_memcpy(addr, sa.v6, 16);
	}
	return sa.family;
}

static __always_inline void read_argv(struct syscall_event *e, const char *const *argv)
{
	__u32 off = 0;
	e->argc = 0;
#pragma unroll
	for (int i = 0; i < MAX_ARGV; i++) {
		const char *arg = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) < 0 || !arg)
			return;
		if (off > ARGV_BYTES - ARGV_ARG_BYTES) {
			e->truncated = 1;
			return;
		}
		long n = bpf_probe_read_user_str(&e->argv[off], ARGV_ARG_BYTES, arg);
		if (n <= 0)
			return;
		if (n == ARGV_ARG_BYTES)
			e->truncated = 1;
		off += n;
		e->argv_len = off;
		e->argc++;
	}
	const char *more = 0;
	if (bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGV]) == 0 && more)
		e->truncated = 1;
}

static __always_inline void read_path(struct syscall_event *e, const char *upath)
{
	long n = bpf_probe_read_user_str(e->path, PATH_BYTES, upath);
	if (n > 0) {
		e->path_len = n - 1;
		if (n == PATH_BYTES)
			e->truncated = 1;
	}
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = ctx->args[1];
	if (python_wait_samples && is_wait(nr)) {
		__u64 id = bpf_get_current_pid_tgid();
		struct traced_process *proc = traced(id >> 32);
		if (proc && !proc->is_go)
			emit_python_stack(id >> 32, (__u32)id, 0, PY_SAMPLE_WAIT);
		return 0;
	}
	if (python_wait_samples && nr == NR_FUTEX) {
		__u64 id = bpf_get_current_pid_tgid();
		struct traced_process *proc = traced(id >> 32);
		if (proc && !proc->is_go && is_untimed_lock_wait((struct pt_regs *)ctx->args[0]))
			emit_python_stack(id >> 32, (__u32)id, 0, PY_SAMPLE_WAIT);
		return 0;
	}
	__u32 bit = syscall_bit(nr);
	if (!(bit & syscall_mask) && !is_fork(nr))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct traced_process *proc = traced(id >> 32);
	if (!proc)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	if (is_fork(nr)) {
		if (proc->is_go) {
			__u32 tid = (__u32)id;
			__u64 g = BPF_CORE_READ(regs, r14);
			bpf_map_update_elem(&fork_routines, &tid, &g, BPF_ANY);
		}
		return 0;
	}
	__u64 a0 = BPF_CORE_READ(regs, di);
	__u64 a1 = BPF_CORE_READ(regs, si);
	__u64 a2 = BPF_CORE_READ(regs, dx);
	__u64 a4 = BPF_CORE_READ(regs, r8);
	if (nr == NR_SENDTO && !a4)
		return 0; // a send on a connected socket: its connect was recorded already

	// A Python process: its Python stack first, so user space can attach it to this syscall.
	if (!proc->is_go)
		emit_python_stack(id >> 32, (__u32)id, 0, PY_SAMPLE_FOR_NEXT);

	struct syscall_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	__u64 routine = proc->is_go ? BPF_CORE_READ(regs, r14) : 0;
	fill_header(&e->hdr, EVENT_SYSCALL_ENTER, routine, (__u32)nr);
	e->fd = (__s64)a0;
	e->flags = 0;
	e->family = 0;
	e->port = 0;
	e->path_len = 0;
	e->argv_len = 0;
	e->argc = 0;
	e->truncated = 0;
	e->stack_len = 0;
	e->sp = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));

	switch (nr) {
	case NR_CONNECT:
		e->family = read_sockaddr((void *)a1, &e->port, e->addr);
		break;
	case NR_SENDTO:
		e->family = read_sockaddr((void *)a4, &e->port, e->addr);
		break;
	case NR_ACCEPT:
	case NR_ACCEPT4:
		break; // the peer is known at exit
	case NR_OPEN_AT:
		read_path(e, (const char *)a1);
		e->flags = a2;
		break;
	case NR_EXECVE:
		e->fd = -1;
		read_path(e, (const char *)a0);
		read_argv(e, (const char *const *)a1);
		break;
	case NR_EXECVEAT:
		read_path(e, (const char *)a1);
		read_argv(e, (const char *const *)a2);
		break;
	}

	if (capture_stacks) {
		long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), BPF_F_USER_STACK);
		if (n > 0)
			e->stack_len = n / sizeof(__u64);
		else
			count_drop(DROP_STACK_FAILED);
		if (n > 0 && !proc->is_go) {
			__u64 sp = BPF_CORE_READ(regs, sp);
			if (bpf_probe_read_user(e->stack_top, sizeof(e->stack_top), (void *)sp) == 0)
				e->sp = sp;
		}
	}
	submit(e);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = BPF_CORE_READ(regs, orig_ax);
	__u32 bit = syscall_bit(nr);
	if (!(bit & syscall_mask))
		return 0;
	struct traced_process *proc = traced(bpf_get_current_pid_tgid() >> 32);
	if (!proc)
		return 0;
	__u64 a1 = BPF_CORE_READ(regs, si);
	if (nr == NR_SENDTO && !BPF_CORE_READ(regs, r8))
		return 0;

	struct syscall_exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	__u64 routine = proc->is_go ? BPF_CORE_READ(regs, r14) : 0;
	fill_header(&e->hdr, EVENT_SYSCALL_EXIT, routine, (__u32)nr);
	e->ret = ctx->args[1];
	e->family = 0;
	e->port = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if ((nr == NR_ACCEPT || nr == NR_ACCEPT4) && e->ret >= 0)
		e->family = read_sockaddr((void *)a1, &e->port, e->addr);
	submit(e);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	struct inode_key key = {};
	struct inode *inode = BPF_CORE_READ(bprm, file, f_inode);
	key.ino = BPF_CORE_READ(inode, i_ino);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	struct traced_process *target = bpf_map_lookup_elem(&traced_executables, &key);
	struct traced_process *proc = traced(tgid);
	bpf_map_delete_elem(&python_procs, &tgid); // a new image: user space or the audit probe tells again
	if (target) {
		bpf_map_update_elem(&traced_processes, &tgid, target, BPF_ANY);
	} else if (proc && proc->is_go) {
		// A traced process (a child of a traced Go program) exec'd another image: key it by
		// thread until user space sees that the new image is Go too.
		struct traced_process reset = *proc;
		reset.is_go = 0;
		bpf_map_update_elem(&traced_processes, &tgid, &reset, BPF_ANY);
	}
	proc = traced(tgid);

	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_PROCESS_EXEC, 0, 0);
	e->child_tgid = 0;
	e->target_id = proc ? proc->target_id : 0;
	e->filename_len = 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, PATH_BYTES, filename);
	if (n > 0)
		e->filename_len = n - 1;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP); // rare, and user space acts on it
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 cpid = BPF_CORE_READ(child, pid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *forking = bpf_map_lookup_elem(&fork_routines, &tid);
	__u64 routine = forking ? *forking : 0;
	if (forking)
		bpf_map_delete_elem(&fork_routines, &tid);
	if (cpid != ctgid)
		return 0; // a new thread, not a new process
	struct traced_process *proc = traced(ptgid);
	if (!proc)
		return 0;
	struct traced_process inherited = *proc;
	bpf_map_update_elem(&traced_processes, &ctgid, &inherited, BPF_ANY);

	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_PROCESS_FORK, routine, 0);
	e->hdr.tgid = ptgid;
	e->child_tgid = ctgid;
	e->target_id = inherited.target_id;
	e->filename_len = 0;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP); // rare, and user space acts on it
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct traced_process *proc = traced(tgid);
	if (!proc)
		return 0;
	if ((__u32)id != tgid) {
		// A thread of a traced process ends: what it had open (a Python request thread's
		// reconstructed calls, a native call) ends with it.
		struct process_event *t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);
		if (!t) {
			count_drop(DROP_RINGBUF_FULL);
			return 0;
		}
		fill_header(&t->hdr, EVENT_THREAD_EXIT, 0, 0);
		t->child_tgid = 0;
		t->target_id = proc->target_id;
		t->filename_len = 0;
		submit(t);
		return 0;
	}
	__u32 target_id = proc->target_id;
	bpf_map_delete_elem(&traced_processes, &tgid);
	bpf_map_delete_elem(&python_procs, &tgid);

	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	fill_header(&e->hdr, EVENT_PROCESS_EXIT, 0, 0);
	e->child_tgid = 0;
	e->target_id = target_id;
	e->filename_len = 0;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP); // rare, and user space acts on it
	return 0;
}

const struct syscall_event *unused_syscall_event __attribute__((unused));
const struct syscall_exit_event *unused_syscall_exit_event __attribute__((unused));
const struct process_event *unused_process_event __attribute__((unused));
const struct traced_process *unused_traced_process __attribute__((unused));
const struct probe_spec *unused_probe_spec __attribute__((unused));
const struct inode_key *unused_inode_key __attribute__((unused));
const enum traced_syscall *unused_traced_syscall __attribute__((unused));
const enum drop_reason *unused_drop_reason __attribute__((unused));
