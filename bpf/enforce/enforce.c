// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Enforcement of a promoted behavioural profile for one workload: one instance of these programs
// (with its own allow maps) is loaded per enforced workload and attached to the workload's
// cgroup; the decisions ring buffer is shared by all instances.
//   cgroup/connect4, connect6, sendmsg4, sendmsg6: outbound TCP and UDP to a destination outside
//     the profile get EPERM: the program returns 0 and the caller sees a refused connection.
//   raw tracepoint sys_enter (execve/execveat) in the workload's cgroup: an executable outside
//     the profile is stopped by killing the process that tries to exec it (this kernel has no BPF
//     LSM to deny the exec itself); for an agent that spawns tools with fork+exec, that is the
//     forked child, so the agent keeps running and sees its child die.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define PATH_BYTES 256
#define NR_EXECVE 59
#define NR_EXECVEAT 322
#define SIGKILL 9

enum decision_kind {
	DECISION_CONNECT = 1,
	DECISION_SENDMSG = 2,
	DECISION_EXEC = 3,
};

// A denied attempt, reported to user space (which adds the rule and profile version).
struct decision {
	__u64 ts_ns;
	__u64 cgroup_id;
	__u32 kind;      // enum decision_kind
	__u32 workload;  // workload_id of the instance that decided
	__u32 tgid;
	__u32 tid;
	__u16 family;    // AF_INET / AF_INET6
	__u16 port;      // host byte order
	__u32 protocol;  // IPPROTO_TCP / IPPROTO_UDP (connect/sendmsg)
	__u32 path_len;
	__u32 ppid;      // exec: the parent's tgid (the process that forked the one killed), else 0
	__u8 addr[16];
	__u8 path[PATH_BYTES];
};

// LPM keys: the port (0 in a rule means any port, so it is looked up twice) then the address.
struct dest4_key {
	__u32 prefixlen; // 32 (port) + address prefix
	__u16 port;      // network byte order
	__u16 pad;
	__u8 addr[4];
};

struct dest6_key {
	__u32 prefixlen;
	__u16 port;
	__u16 pad;
	__u8 addr[16];
};

struct path_key {
	__u8 path[PATH_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dest4_key);
	__type(value, __u8);
} allowed4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dest6_key);
	__type(value, __u8);
} allowed6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct path_key);
	__type(value, __u8);
} allowed_execs SEC(".maps");

// The workload's cgroup, for the exec check (bpf_current_task_under_cgroup).
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} workload_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} decisions SEC(".maps");

// Set before load: whether exec enforcement is on, and the workload this instance enforces.
volatile const __u8 enforce_exec = 1;
volatile const __u32 workload_id = 0;

static __always_inline void report(__u32 kind, __u16 family, __u16 port, __u32 protocol, const void *addr, int addr_len)
{
	struct decision *d = bpf_ringbuf_reserve(&decisions, sizeof(*d), 0);
	if (!d)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	d->ts_ns = bpf_ktime_get_ns();
	d->cgroup_id = bpf_get_current_cgroup_id();
	d->kind = kind;
	d->workload = workload_id;
	d->ppid = 0;
	d->tgid = id >> 32;
	d->tid = (__u32)id;
	d->family = family;
	d->port = port;
	d->protocol = protocol;
	d->path_len = 0;
	__builtin_memset(d->addr, 0, sizeof(d->addr));
	if (addr_len == 4)
		__builtin_memcpy(d->addr, addr, 4);
	else if (addr_len == 16)
		__builtin_memcpy(d->addr, addr, 16);
	bpf_ringbuf_submit(d, BPF_RB_FORCE_WAKEUP);
}

static __always_inline int allowed_v4(__u32 ip, __u16 port_be)
{
	struct dest4_key k = {.prefixlen = 64, .port = port_be};
	__builtin_memcpy(k.addr, &ip, 4);
	if (bpf_map_lookup_elem(&allowed4, &k))
		return 1;
	k.port = 0; // rules for any port
	return bpf_map_lookup_elem(&allowed4, &k) != 0;
}

static __always_inline int allowed_v6(struct bpf_sock_addr *ctx, __u16 port_be, __u8 addr[16])
{
	struct dest6_key k = {.prefixlen = 160, .port = port_be};
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__builtin_memcpy(&k.addr[0], &w0, 4);
	__builtin_memcpy(&k.addr[4], &w1, 4);
	__builtin_memcpy(&k.addr[8], &w2, 4);
	__builtin_memcpy(&k.addr[12], &w3, 4);
	__builtin_memcpy(addr, k.addr, 16);
	if (bpf_map_lookup_elem(&allowed6, &k))
		return 1;
	k.port = 0;
	return bpf_map_lookup_elem(&allowed6, &k) != 0;
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u32 ip = ctx->user_ip4;
	__u16 port_be = (__u16)ctx->user_port;
	if (allowed_v4(ip, port_be))
		return 1;
	report(kind, 2, bpf_ntohs(port_be), ctx->protocol, &ip, 4);
	return 0; // EPERM
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u8 addr[16];
	__u16 port_be = (__u16)ctx->user_port;
	if (allowed_v6(ctx, port_be, addr))
		return 1;
	report(kind, 10, bpf_ntohs(port_be), ctx->protocol, addr, 16);
	return 0;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return check4(ctx, DECISION_CONNECT); }

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return check6(ctx, DECISION_CONNECT); }

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return check4(ctx, DECISION_SENDMSG); }

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return check6(ctx, DECISION_SENDMSG); }

SEC("raw_tracepoint/sys_enter")
int exec_guard(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = ctx->args[1];
	if (!enforce_exec || (nr != NR_EXECVE && nr != NR_EXECVEAT))
		return 0;
	if (bpf_current_task_under_cgroup(&workload_cgroup, 0) != 1)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	const char *upath = (const char *)(nr == NR_EXECVE ? BPF_CORE_READ(regs, di) : BPF_CORE_READ(regs, si));
	struct decision *d = bpf_ringbuf_reserve(&decisions, sizeof(*d), 0);
	if (!d) {
		// No room to report: still enforce (fail closed for the workload being enforced).
		struct path_key k = {};
		bpf_probe_read_user_str(k.path, sizeof(k.path), upath);
		if (!bpf_map_lookup_elem(&allowed_execs, &k))
			bpf_send_signal(SIGKILL);
		return 0;
	}
	__builtin_memset(d->path, 0, sizeof(d->path));
	long n = bpf_probe_read_user_str(d->path, sizeof(d->path), upath);
	if (bpf_map_lookup_elem(&allowed_execs, d->path)) {
		bpf_ringbuf_discard(d, 0);
		return 0;
	}
	bpf_send_signal(SIGKILL);
	__u64 id = bpf_get_current_pid_tgid();
	d->ts_ns = bpf_ktime_get_ns();
	d->cgroup_id = bpf_get_current_cgroup_id();
	d->kind = DECISION_EXEC;
	d->workload = workload_id;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	d->ppid = BPF_CORE_READ(task, real_parent, tgid);
	d->tgid = id >> 32;
	d->tid = (__u32)id;
	d->family = 0;
	d->port = 0;
	d->protocol = 0;
	d->path_len = n > 0 ? n - 1 : 0;
	__builtin_memset(d->addr, 0, sizeof(d->addr));
	bpf_ringbuf_submit(d, BPF_RB_FORCE_WAKEUP);
	return 0;
}

const struct decision *unused_decision __attribute__((unused));
const struct dest4_key *unused_dest4_key __attribute__((unused));
const struct dest6_key *unused_dest6_key __attribute__((unused));
const struct path_key *unused_path_key __attribute__((unused));
const enum decision_kind *unused_decision_kind __attribute__((unused));
