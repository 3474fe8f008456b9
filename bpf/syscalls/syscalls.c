// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Syscall and process-lifecycle events of traced processes, from the per-syscall tracepoints
// of the syscalls the configuration needs (tracefs) or, as the fallback, the sys_enter and
// sys_exit raw tracepoints; the process lifecycle from raw tracepoints. Every record of a traced process carries the goroutine (Go) or
// thread key and, when enabled, the user call stack that led to the syscall.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "../common/python.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// x86-64 syscall numbers (an enum, so that bpf2go gives user space the same numbers for the
// filter bitmaps below).
enum syscall_nr {
	NR_OPEN_AT = 257,
	NR_CONNECT = 42,
	NR_ACCEPT = 43,
	NR_SENDTO = 44,
	// Where a thread starts to wait for input (Python wait samples).
	NR_POLL = 7,
	NR_SELECT = 23,
	NR_RECVFROM = 45,
	NR_RECVMSG = 47,
	NR_EPOLL_WAIT = 232,
	NR_PSELECT6 = 270,
	NR_PPOLL = 271,
	NR_EPOLL_PWAIT = 281,
	NR_EPOLL_PWAIT2 = 441,
	NR_FUTEX = 202,
	NR_ACCEPT4 = 288,
	NR_EXECVE = 59,
	NR_EXECVEAT = 322,
	NR_CLONE = 56,
	NR_FORK = 57,
	NR_VFORK = 58,
	NR_CLONE3 = 435,
	// Socket and pipe I/O (EVENT_FD_IO).
	NR_READ = 0,
	NR_WRITE = 1,
	NR_READV = 19,
	NR_WRITEV = 20,
	NR_SENDFILE = 40,
	NR_SENDMSG = 46,
	NR_SPLICE = 275,
	NR_RECVMMSG = 299,
	NR_SENDMMSG = 307,
	// Syscall numbers the filter bitmaps cover; any number above goes to the full checks.
	NR_FILTERED = 512,
};

// The node-wide tax of the raw-tracepoint path (the fallback): sys_enter and sys_exit run at
// every syscall of every process on the node. Before anything else, sys_enter looks the syscall number up in enter_nrs (the numbers some
// program of this configuration acts on: user space sets the bits from the config, see
// probes.syscallFilter) and returns for any other; a process is then looked up in traced_tgids
// (one bit per tgid, an array the verifier inlines) before the traced_processes hash. sys_exit
// does the same with exit_nrs. The order is by pages touched, not instructions: on a kernel
// with page-table isolation and no PCID (the test VM) every return to user space flushes the
// TLB, and a load from map memory (vmalloc'd, 4 KiB pages) costs a page walk, about 30 ns there,
// against a few ns for the instructions. The bitmaps share .rodata's one page, which sys_enter
// already brought in for sys_exit (the registers that hold the syscall number are on the
// kernel stack, also warm); traced_tgids is the only other page an untraced process's I/O call
// touches, and a syscall no program needs touches none. A syscall number past NR_FILTERED goes
// to the full checks.
volatile const __u64 enter_nrs[NR_FILTERED / 64] = {};
volatile const __u64 exit_nrs[NR_FILTERED / 64] = {};

// Bounds tgids covered by traced_tgids: the kernel's PID_MAX_LIMIT on 64-bit (4M).
#define TGID_BITS (1 << 22)

// One bit per tgid: set whenever the process is put in traced_processes (by user space, or here
// at fork and exec), cleared before it is deleted from it. A set bit whose process is not in the
// hash only costs the hash lookup; a process in the hash always has its bit. Mapped into user
// space (BPF_F_MMAPABLE), which sets and clears bits with atomic instructions, as the programs
// do, so that neither loses the other's bit of the same word.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TGID_BITS / 64);
	__type(key, __u32);
	__type(value, __u64);
} traced_tgids SEC(".maps");

static __always_inline int nr_wanted(volatile const __u64 *bits, long nr)
{
	if ((unsigned long)nr >= NR_FILTERED)
		return 1;
	return (bits[(unsigned long)nr / 64] >> ((unsigned long)nr % 64)) & 1;
}

// maybe_traced is 0 when the process is certainly not traced (its bit is clear).
static __always_inline int maybe_traced(__u32 tgid)
{
	if (tgid >= TGID_BITS)
		return 1;
	__u32 word = tgid / 64;
	__u64 *w = bpf_map_lookup_elem(&traced_tgids, &word);
	return !w || ((*w >> (tgid % 64)) & 1);
}

static __always_inline void tgid_bit(__u32 tgid, int set)
{
	if (tgid >= TGID_BITS)
		return;
	__u32 word = tgid / 64;
	__u64 *w = bpf_map_lookup_elem(&traced_tgids, &word);
	if (!w)
		return;
	__u64 bit = 1ULL << (tgid % 64);
	if (set)
		__sync_fetch_and_or(w, bit);
	else
		__sync_fetch_and_and(w, ~bit);
}

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFIFO 0010000

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

// The syscall programs come in two forms that share the bodies below (one per family of
// syscalls): raw tracepoints on sys_enter and sys_exit, which every syscall of every process on
// the node runs, and tracepoint programs attached only to the per-syscall tracepoints
// (syscalls:sys_enter_openat, ...) of the syscalls this configuration needs, which the kernel
// does not run at all for the others (it checks a bit per syscall number before any program).
// User space uses the per-syscall ones where tracefs is available and falls back to the raw
// ones (probes.attachSyscalls). Every body gets the syscall's user registers: a raw tracepoint
// has them as its first argument; a per-syscall tracepoint's record starts with a pointer to
// them that a program may not read, so those programs take the task's (the same registers,
// saved at syscall entry).

// enter_wait: where a Python thread starts to wait for input or blocks on a lock (a stack
// sample of python_functions' reconstructed spans).
static __always_inline int enter_wait(__u64 id, long nr, struct pt_regs *regs)
{
	if (!python_wait_samples)
		return 0;
	struct traced_process *proc = traced(id >> 32);
	if (!proc || proc->is_go)
		return 0;
	if (nr == NR_FUTEX && !is_untimed_lock_wait(regs))
		return 0;
	emit_python_stack(id >> 32, (__u32)id, 0, PY_SAMPLE_WAIT);
	return 0;
}

// enter_fork keeps a Go process's forking goroutine for sched_process_fork.
static __always_inline int enter_fork(__u64 id, struct pt_regs *regs)
{
	struct traced_process *proc = traced(id >> 32);
	if (!proc || !proc->is_go)
		return 0;
	__u32 tid = (__u32)id;
	__u64 g = BPF_CORE_READ(regs, r14);
	bpf_map_update_elem(&fork_routines, &tid, &g, BPF_ANY);
	return 0;
}

// enter_record records the entry of a traced syscall (connect, accept, sendto, execve, openat)
// with its arguments and, when enabled, the user call stack; ctx is the program's context, for
// bpf_get_stack.
static __always_inline int enter_record(void *ctx, __u64 id, long nr, struct pt_regs *regs)
{
	__u32 bit = syscall_bit(nr);
	if (!(bit & syscall_mask))
		return 0;
	struct traced_process *proc = traced(id >> 32);
	if (!proc)
		return 0;
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

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = ctx->args[1];
	if (!nr_wanted(enter_nrs, nr))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!maybe_traced(id >> 32))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	if (is_wait(nr) || nr == NR_FUTEX)
		return enter_wait(id, nr, regs);
	if (is_fork(nr))
		return enter_fork(id, regs);
	return enter_record(ctx, id, nr, regs);
}

// The head of a per-syscall tracepoint's record as a program sees it: the first 8 bytes (a
// pointer to the registers) are not readable; sys_enter_* records go on with the syscall's
// arguments (as many as it has: reading past them fails the attach), sys_exit_* with ret.
struct syscall_tp_enter {
	__u64 regs;
	int nr;
};

struct syscall_tp_exit {
	__u64 regs;
	int nr;
	long ret;
};

static __always_inline struct pt_regs *task_user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

// The per-syscall tracepoint programs, one per family; user space attaches each to the
// tracepoints of its syscalls that the configuration needs (the numbers of enter_nrs and
// exit_nrs), so they need neither bitmap. The section names are only the program type.
SEC("tracepoint/syscalls/sys_enter_rec")
int sys_enter_rec(struct syscall_tp_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!maybe_traced(id >> 32))
		return 0;
	return enter_record(ctx, id, ctx->nr, task_user_regs());
}

SEC("tracepoint/syscalls/sys_enter_fork")
int sys_enter_fork(struct syscall_tp_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!maybe_traced(id >> 32))
		return 0;
	return enter_fork(id, task_user_regs());
}

SEC("tracepoint/syscalls/sys_enter_wait")
int sys_enter_wait(struct syscall_tp_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!maybe_traced(id >> 32))
		return 0;
	return enter_wait(id, ctx->nr, task_user_regs());
}

// How an I/O syscall passes its data: the argument register holding it and its shape.
enum io_shape {
	IO_NONE = 0,
	IO_BUF = 1,    // write, read, sendto, recvfrom: a buffer (si) and its length (dx)
	IO_IOV = 2,    // writev, readv: an iovec array (si)
	IO_MSG = 3,    // sendmsg, recvmsg: a msghdr (si)
	IO_MMSG = 4,   // sendmmsg, recvmmsg: an mmsghdr array (si); ret is the message count
	IO_NODATA = 5, // sendfile (out fd in di), splice (out fd in dx): bytes only
};

// io_op classifies an I/O syscall: its shape, and FD_IO_SEND or FD_IO_RECV in *dir. Only a
// switch on the number: untraced processes pay nothing more for other syscalls.
static __always_inline int io_op(long nr, __u8 *dir)
{
	switch (nr) {
	case NR_WRITE:
	case NR_SENDTO: *dir = FD_IO_SEND; return IO_BUF;
	case NR_WRITEV: *dir = FD_IO_SEND; return IO_IOV;
	case NR_SENDMSG: *dir = FD_IO_SEND; return IO_MSG;
	case NR_SENDMMSG: *dir = FD_IO_SEND; return IO_MMSG;
	case NR_SENDFILE:
	case NR_SPLICE: *dir = FD_IO_SEND; return IO_NODATA;
	}
	if (!sockets_inbound)
		return IO_NONE;
	switch (nr) {
	case NR_READ:
	case NR_RECVFROM: *dir = FD_IO_RECV; return IO_BUF;
	case NR_READV: *dir = FD_IO_RECV; return IO_IOV;
	case NR_RECVMSG: *dir = FD_IO_RECV; return IO_MSG;
	case NR_RECVMMSG: *dir = FD_IO_RECV; return IO_MMSG;
	}
	return IO_NONE;
}

// One record under construction per CPU (too large for the BPF stack); user space sets
// max_entries to the number of possible CPUs. The slack after the record lets a buffer of a
// writev or sendmsg be read at a variable offset of data: the verifier bounds offset and length
// apart (each up to FD_IO_MAX_CAPTURE), so their sum must fit in the map value; what is sent is
// cut to the record's data.
struct fd_scratch_value {
	struct fd_io_event e;
	__u8 slack[FD_IO_MAX_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fd_scratch_value);
} fd_scratch SEC(".maps");

// Sockets and pipes that carry a plaintext protocol (HTTP/1, HTTP/2 without TLS, JSON-RPC on a
// pipe or unix socket): their payload is captured. Key: the struct sock * of a socket, the
// inode number of a pipe (kernel pointers and inode numbers do not overlap). Marked here when a
// call's data starts like such a protocol, unmarked when it starts like a TLS record; user space
// may do either.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} plain_fds SEC(".maps");

// The open file behind fd in the current process, or 0.
static __always_inline struct file *fd_file(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return 0;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (!fds || bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) < 0)
		return 0;
	return f;
}

// sock_of returns the socket's struct sock for a socket file, 0 otherwise; *ino is the inode
// number and *mode its type bits either way.
static __always_inline struct sock *sock_of(struct file *f, __u64 *ino, __u32 *mode)
{
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	*mode = BPF_CORE_READ(inode, i_mode) & S_IFMT;
	*ino = BPF_CORE_READ(inode, i_ino);
	if (*mode != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

// sock_info fills the kind, family, network namespace, peer and local address from the socket.
static __always_inline void sock_info(struct sock *sk, struct fd_io_event *e)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (family == AF_UNIX) {
		e->kind = FD_IO_UNIX;
		// The peer socket's inode (a socketpair's other end: an MCP server's stdio under
		// Node), as the kernel has it now: user space would ask sock_diag later, when a short
		// session's sockets may be closed already.
		struct sock *peer = BPF_CORE_READ((struct unix_sock *)sk, peer);
		if (peer) {
			__u64 pino = BPF_CORE_READ(peer, sk_socket, file, f_inode, i_ino);
			__builtin_memcpy(e->peer, &pino, sizeof(pino));
		}
		return;
	}
	if (family != AF_INET && family != AF_INET6) {
		e->kind = FD_IO_OTHER;
		return;
	}
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	e->kind = proto == IPPROTO_TCP ? FD_IO_TCP : proto == IPPROTO_UDP ? FD_IO_UDP : FD_IO_OTHER;
	e->peer_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(e->peer, &d, 4);
		__builtin_memcpy(e->local, &l, 4);
	} else {
		BPF_CORE_READ_INTO(&e->peer, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	}
}

// Whether data starts like a plaintext protocol whose payload user space parses.
static __always_inline int plain_start(const __u8 *b, int pipe)
{
	if (pipe)
		return b[0] == '{';
	switch (b[0]) {
	case 'G': return b[1] == 'E' && b[2] == 'T' && b[3] == ' ';
	case 'P':
		return (b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ') ||
		       (b[1] == 'U' && b[2] == 'T' && b[3] == ' ') ||
		       (b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ') ||
		       (b[1] == 'R' && b[2] == 'I' && b[3] == ' ' && b[4] == '*' && b[5] == ' ' && b[6] == 'H');
	case 'D': return b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ';
	case 'H':
		return (b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ') ||
		       (b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' && b[6] == '.');
	case 'O': return b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S' && b[7] == ' ';
	}
	return 0;
}

// A TLS record header (handshake, alert, change cipher spec, application data; version 3.x):
// from here on the bytes are ciphertext, never captured.
static __always_inline int tls_start(const __u8 *b)
{
	return b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03 && b[2] <= 0x04;
}

struct first_buf {
	__u64 ptr;
	__u64 len;
	__u64 iov; // writev, sendmsg: the iovec array (the first buffer is its entry 0)
	__u64 iovcnt;
};

// first_data finds the call's first data buffer (the only one whose payload is captured) and,
// for sendto/recvfrom/sendmsg/recvmsg, the address argument. Returns -1 when user memory could
// not be read.
static __always_inline int first_data(struct pt_regs *regs, int shape, struct first_buf *fb, __u64 *uaddr)
{
	__u64 a1 = BPF_CORE_READ(regs, si);
	struct iovec iov = {};
	struct user_msghdr msg = {};
	switch (shape) {
	case IO_BUF:
		fb->ptr = a1;
		fb->len = BPF_CORE_READ(regs, dx);
		*uaddr = BPF_CORE_READ(regs, r8);
		return 0;
	case IO_IOV:
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)a1) < 0)
			return -1;
		fb->iov = a1;
		fb->iovcnt = BPF_CORE_READ(regs, dx);
		break;
	case IO_MSG:
	case IO_MMSG: // the first mmsghdr starts with its msghdr
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)a1) < 0)
			return -1;
		*uaddr = (__u64)msg.msg_name;
		if (!msg.msg_iov || !msg.msg_iovlen)
			return 0;
		if (bpf_probe_read_user(&iov, sizeof(iov), msg.msg_iov) < 0)
			return -1;
		if (shape == IO_MSG) { // an mmsghdr's messages are not one stream of bytes
			fb->iov = (__u64)msg.msg_iov;
			fb->iovcnt = msg.msg_iovlen;
		}
		break;
	default:
		return 0;
	}
	fb->ptr = (__u64)iov.iov_base;
	fb->len = iov.iov_len;
	return 0;
}

// pipe_json_start tells whether a call on a pipe not marked in plain_fds starts with '{' and
// moved at least 8 bytes (what fd_io needs to mark it). Only write/read and writev/readv reach
// here for a pipe: sendmsg and the like fail on it with ENOTSOCK.
static __always_inline int pipe_json_start(struct pt_regs *regs, int shape, long ret)
{
	__u64 ptr = BPF_CORE_READ(regs, si);
	__u64 len = 0;
	if (shape == IO_BUF) {
		len = BPF_CORE_READ(regs, dx);
	} else if (shape == IO_IOV) {
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)ptr) < 0)
			return 0;
		ptr = (__u64)iov.iov_base;
		len = iov.iov_len;
	} else {
		return 0;
	}
	if ((__u64)ret < len)
		len = ret;
	__u8 c = 0;
	if (!ptr || len < 8 || bpf_probe_read_user(&c, 1, (void *)ptr) < 0)
		return 0;
	return c == '{';
}

// more_iovs appends the buffers after the first of a writev or sendmsg to the record's data,
// which holds off bytes (the whole first buffer), up to want bytes in all (the capture bound,
// at most the bytes the call moved): Node's HTTP client writes a request's headers and its body
// in one writev, Python's asyncio a response's. At most FD_IO_MAX_IOV buffers are read; when
// bytes within the bound remain in later ones, FD_IO_F_IOV_CUT says so (and PAYLOAD_CUT, as for
// any capture shorter than the call). Returns the bytes now in data.
static __always_inline __u64 more_iovs(struct fd_io_event *e, const struct first_buf *fb, __u64 off, __u64 want)
{
	const struct iovec *vec = (const struct iovec *)fb->iov;
	if (want > FD_IO_MAX_CAPTURE)
		want = FD_IO_MAX_CAPTURE;
	for (int i = 1; i < FD_IO_MAX_IOV; i++) {
		if (i >= fb->iovcnt || off >= want)
			return off;
		struct iovec iov = {};
		if (bpf_probe_read_user(&iov, sizeof(iov), &vec[i]) < 0) {
			e->flags |= FD_IO_F_READ_FAILED;
			return off;
		}
		__u64 n = iov.iov_len;
		if (n > want - off)
			n = want - off;
		if (!n)
			continue;
		if (!iov.iov_base) {
			e->flags |= FD_IO_F_READ_FAILED;
			return off;
		}
		__u64 at = off;
		asm volatile("" : "+r"(at), "+r"(n));
		if (at >= FD_IO_MAX_CAPTURE || n > FD_IO_MAX_CAPTURE)
			return off;
		if (bpf_probe_read_user((__u8 *)e->data + at, n, iov.iov_base) < 0) {
			e->flags |= FD_IO_F_READ_FAILED;
			return off;
		}
		off += n;
	}
	if (FD_IO_MAX_IOV < fb->iovcnt && off < want)
		e->flags |= FD_IO_F_IOV_CUT;
	return off;
}

// mmsg_bytes sums msg_len over the first FD_IO_MAX_MMSG of the n messages sent or received.
static __always_inline __u64 mmsg_bytes(struct pt_regs *regs, long n, struct fd_io_event *e, __u64 *first)
{
	struct mmsghdr *vec = (struct mmsghdr *)BPF_CORE_READ(regs, si);
	__u64 sum = 0;
	if (n > FD_IO_MAX_MMSG)
		e->flags |= FD_IO_F_TRUNCATED;
#pragma unroll
	for (int i = 0; i < FD_IO_MAX_MMSG; i++) {
		if (i >= n)
			break;
		__u32 len = 0;
		if (bpf_probe_read_user(&len, sizeof(len), &vec[i].msg_len) < 0) {
			e->flags |= FD_IO_F_READ_FAILED;
			break;
		}
		if (i == 0)
			*first = len;
		sum += len;
	}
	return sum;
}

// fd_io emits EVENT_FD_IO for a traced process's I/O call that moved ret > 0 bytes, when its
// fd is a socket, or a pipe that carries a plaintext protocol.
static __always_inline void fd_io(struct pt_regs *regs, long nr, int shape, __u8 dir, long ret, __u8 is_go)
{
	__u64 fd = nr == NR_SPLICE ? BPF_CORE_READ(regs, dx) : BPF_CORE_READ(regs, di);
	struct file *f = fd_file(fd);
	if (!f)
		return;
	__u64 ino = 0;
	__u32 mode = 0;
	struct sock *sk = sock_of(f, &ino, &mode);
	int pipe = 0;
	__u64 key = (__u64)sk;
	if (!sk) {
		if (mode != S_IFIFO || !fd_capture_bytes || shape == IO_NODATA)
			return;
		// A pipe is reported only while it carries JSON-RPC: a process whose pipes carry
		// anything else (logs, a shell's output) pays for one lookup and one byte, not for
		// the record's header and payload checks.
		if (!bpf_map_lookup_elem(&plain_fds, &ino) && !pipe_json_start(regs, shape, ret))
			return;
		pipe = 1;
		key = ino;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	struct fd_io_event *e = bpf_map_lookup_elem(&fd_scratch, &cpu);
	if (!e)
		return;
	__u64 routine = is_go ? BPF_CORE_READ(regs, r14) : 0;
	fill_header(&e->hdr, EVENT_FD_IO, routine, (__u32)nr);
	e->sock = (__u64)sk;
	e->ino = ino;
	e->bytes = ret;
	e->fd = (__s32)fd;
	e->netns = 0;
	e->family = 0;
	e->peer_port = 0;
	e->local_port = 0;
	e->direction = dir;
	e->kind = FD_IO_PIPE;
	e->flags = 0;
	e->captured = 0;
	__builtin_memset(e->peer, 0, sizeof(e->peer));
	__builtin_memset(e->local, 0, sizeof(e->local));
	if (sk)
		sock_info(sk, e);

	struct first_buf fb = {};
	__u64 uaddr = 0;
	if (first_data(regs, shape, &fb, &uaddr) < 0)
		e->flags |= FD_IO_F_READ_FAILED;
	__u64 avail = ret; // bytes of the first buffer that hold data
	if (shape == IO_MMSG) {
		__u64 first = 0;
		e->bytes = mmsg_bytes(regs, ret, e, &first);
		avail = first;
	}
	if (avail > fb.len)
		avail = fb.len;

	if ((e->kind == FD_IO_TCP || e->kind == FD_IO_UDP) && e->peer_port == 0) {
		// Not connected (a UDP sendto or recvfrom): the call's own address names the peer.
		if (uaddr && nr != NR_WRITE && nr != NR_READ) {
			__u16 port = 0;
			__u16 fam = read_sockaddr((void *)uaddr, &port, e->peer);
			if (fam == AF_INET || fam == AF_INET6)
				e->peer_port = port;
		}
		if (e->peer_port == 0)
			e->flags |= FD_IO_F_PEER_UNKNOWN;
	}

	__u64 limit = 0;
	if ((e->kind == FD_IO_TCP || e->kind == FD_IO_UDP) && e->peer_port == dns_port) {
		limit = FD_IO_DNS_CAPTURE;
		e->flags |= FD_IO_F_DNS;
	} else if (fd_capture_bytes && fb.ptr && avail >= 8 && shape != IO_NODATA) {
		__u8 head[8] = {};
		if (bpf_probe_read_user(head, sizeof(head), (void *)fb.ptr) == 0) {
			__u8 *marked = bpf_map_lookup_elem(&plain_fds, &key);
			if (tls_start(head)) {
				if (marked)
					bpf_map_delete_elem(&plain_fds, &key);
			} else if (marked) {
				limit = fd_capture_bytes;
			} else if (plain_start(head, pipe) || (e->kind == FD_IO_UNIX && head[0] == '{')) {
				// JSON on a unix socket too: Node (libuv) gives a child's stdio as a
				// socketpair, not pipes, so MCP over stdio from Node agents goes through one.
				__u8 one = 1;
				bpf_map_update_elem(&plain_fds, &key, &one, BPF_ANY);
				limit = fd_capture_bytes;
			}
		}
		if (limit)
			e->flags |= FD_IO_F_PLAIN;
	} else if (fd_capture_bytes && fb.ptr && avail > 0 && shape != IO_NODATA) {
		// Shorter than a protocol's start: only a socket already marked is captured.
		if (bpf_map_lookup_elem(&plain_fds, &key))
			limit = fd_capture_bytes;
		if (limit)
			e->flags |= FD_IO_F_PLAIN;
	}
	if (pipe && !limit)
		return; // a pipe is reported only while it carries a plaintext protocol

	__u64 sz = avail;
	if (!fb.ptr)
		sz = 0;
	if (sz > limit)
		sz = limit;
	asm volatile("" : "+r"(sz));
	if (sz > FD_IO_MAX_CAPTURE)
		sz = FD_IO_MAX_CAPTURE;
	if (sz && bpf_probe_read_user(e->data, sz, (void *)fb.ptr) < 0) {
		e->flags |= FD_IO_F_READ_FAILED;
		sz = 0;
	}
	// The first buffer whole, within the bound, and the call moved more: its later buffers.
	if (sz && sz == fb.len && fb.iovcnt > 1 && sz < limit && sz < e->bytes)
		sz = more_iovs(e, &fb, sz, limit < e->bytes ? limit : e->bytes);
	if (sz < e->bytes && limit)
		e->flags |= FD_IO_F_PAYLOAD_CUT;
	e->captured = sz;
	output(e, offsetof(struct fd_io_event, data) + sz, sizeof(*e));
}

// sock_identity fills a connect's or accept's exit record with its socket's identity.
static __always_inline void sock_identity(__u64 fd, struct syscall_exit_event *e)
{
	struct file *f = fd_file(fd);
	if (!f)
		return;
	__u64 ino = 0;
	__u32 mode = 0;
	struct sock *sk = sock_of(f, &ino, &mode);
	if (!sk)
		return;
	e->sock = (__u64)sk;
	e->ino = ino;
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(e->local, &l, 4);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	} else {
		return;
	}
	e->local_family = family;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
}

// exit_body: a traced process's socket or pipe I/O (EVENT_FD_IO) and the exit of a traced
// syscall, with what it returned (one family: sendto is both).
static __always_inline int exit_body(__u32 tgid, long nr, long ret, struct pt_regs *regs)
{
	__u32 bit = syscall_bit(nr);
	__u8 dir = 0;
	int shape = sockets_enabled ? io_op(nr, &dir) : IO_NONE;
	if (!(bit & syscall_mask) && shape == IO_NONE)
		return 0;
	struct traced_process *proc = traced(tgid);
	if (!proc)
		return 0;
	if (shape != IO_NONE && ret > 0)
		fd_io(regs, nr, shape, dir, ret, proc->is_go);
	if (!(bit & syscall_mask))
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
	e->ret = ret;
	e->family = 0;
	e->port = 0;
	e->sock = 0;
	e->ino = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	__builtin_memset(e->local, 0, sizeof(e->local));
	e->local_family = 0;
	e->local_port = 0;
	e->netns = 0;
	if ((nr == NR_ACCEPT || nr == NR_ACCEPT4) && ret >= 0) {
		e->family = read_sockaddr((void *)a1, &e->port, e->addr);
		sock_identity(ret, e);
	} else if (nr == NR_CONNECT) {
		sock_identity(BPF_CORE_READ(regs, di), e);
	}
	submit(e);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = BPF_CORE_READ(regs, orig_ax);
	if (!nr_wanted(exit_nrs, nr))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!maybe_traced(tgid))
		return 0;
	return exit_body(tgid, nr, ctx->args[1], regs);
}

SEC("tracepoint/syscalls/sys_exit_tp")
int sys_exit_tp(struct syscall_tp_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!maybe_traced(tgid))
		return 0;
	return exit_body(tgid, ctx->nr, ctx->ret, task_user_regs());
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
		tgid_bit(tgid, 1); // after the hash: a traced process always has its bit
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
	tgid_bit(ctgid, 1);

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
	tgid_bit(tgid, 0); // before the hash (see traced_tgids)
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
const struct fd_io_event *unused_fd_io_event __attribute__((unused));
const struct process_event *unused_process_event __attribute__((unused));
const struct traced_process *unused_traced_process __attribute__((unused));
const struct probe_spec *unused_probe_spec __attribute__((unused));
const struct inode_key *unused_inode_key __attribute__((unused));
const enum traced_syscall *unused_traced_syscall __attribute__((unused));
const enum drop_reason *unused_drop_reason __attribute__((unused));
const enum fd_io_direction *unused_fd_io_direction __attribute__((unused));
const enum fd_io_kind *unused_fd_io_kind __attribute__((unused));
const enum fd_io_flags *unused_fd_io_flags __attribute__((unused));
const enum syscall_nr *unused_syscall_nr __attribute__((unused));
