// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Maps shared by every probe family. The loader creates them once (from the syscalls object)
// and hands the same maps to the other objects.
#pragma once

#include "events.h"

#define MAX_PROBES 4096
#define MAX_TRACED_PROCESSES 16384

enum drop_reason {
	DROP_RINGBUF_FULL = 0,    // bpf_ringbuf_reserve failed: user space is not keeping up
	DROP_STACK_FAILED = 1,    // bpf_get_stack returned an error (event sent without stack)
	DROP_NEWPROC_UNPAIRED = 2,// runtime.newproc1 returned without a recorded entry
	DROP_PYTHON_STACK = 3,    // a Python process's stack could not be walked (no thread state, read error)
	DROP_REASONS = 4,
};

struct traced_process {
	__u32 target_id; // 1-based index into user space's targets
	__u8 is_go;      // goroutine-keyed: read the g pointer from R14
	__u8 _pad[3];
};

struct arg_spec {
	__u8 kind;   // enum arg_kind
	__u8 reg0;   // enum reg_id: value or pointer
	__u8 reg1;   // enum reg_id: length (Go strings and slices)
	__u8 size;   // byte width of integers
};

struct probe_spec {
	__u8 nargs;
	__u8 is_go;
	__u8 _pad[2];
	struct arg_spec args[MAX_ARGS];
};

struct inode_key {
	__u64 dev;
	__u64 ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); // user space may resize before load
} events SEC(".maps");

// Processes whose syscalls and function calls are recorded.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TRACED_PROCESSES);
	__type(key, __u32); // tgid
	__type(value, struct traced_process);
} traced_processes SEC(".maps");

// Executables whose processes are traced from their first instruction: exec of a file with this
// device and inode marks the process in the kernel, so no early call is lost to user space's latency.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct inode_key);
	__type(value, struct traced_process);
} traced_executables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, __u32);
	__type(value, struct probe_spec);
} probe_specs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

// Set to 1 by user space before it waits with nothing to do: the next record wakes it (and
// clears it), so an idle reader needs no periodic polling. Key 0.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reader_idle SEC(".maps");

// Set by user space before load.
volatile const __u32 syscall_mask = 0; // bit per enum traced_syscall
// Socket I/O (EVENT_FD_IO): on, with receives, the plaintext payload bound, the DNS port.
volatile const __u8 sockets_enabled = 0;
volatile const __u8 sockets_inbound = 0;
volatile const __u32 fd_capture_bytes = 0;
volatile const __u16 dns_port = 53;
volatile const __u8 capture_stacks = 1;
// Wake the reader only once this much data waits, or when it waits idle (reader_idle): a wakeup
// is an interrupt to another CPU, which on a virtual machine costs more than the probe itself.
// A busy reader polls at its flush interval, so nothing waits longer than that.
volatile const __u64 wakeup_bytes = 256 << 10;

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline __u64 wakeup_flag(void)
{
	__u32 zero = 0;
	__u32 *idle = bpf_map_lookup_elem(&reader_idle, &zero);
	if (idle && *idle) {
		*idle = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	return avail >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

// submit hands a record to user space, waking the reader only when enough data waits or it
// waits idle.
static __always_inline void submit(void *e)
{
	bpf_ringbuf_submit(e, wakeup_flag());
}

// output copies a record built elsewhere (a per-CPU scratch buffer) into the ring buffer, with
// the same wakeup policy as submit: for records whose size is only known at run time.
// size is clamped to max (the record's full size) on the register passed to the helper, which
// is what the verifier checks.
static __always_inline long output(void *data, __u64 size, __u64 max)
{
	asm volatile("" : "+r"(size));
	if (size > max)
		size = max;
	long err = bpf_ringbuf_output(&events, data, size, wakeup_flag());
	if (err)
		count_drop(DROP_RINGBUF_FULL);
	return err;
}

static __always_inline struct traced_process *traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced_processes, &tgid);
}

static __always_inline void fill_header(struct event_header *h, __u32 kind, __u64 routine, __u32 probe_id)
{
	__u64 id = bpf_get_current_pid_tgid();
	h->ts_ns = bpf_ktime_get_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->routine = routine;
	h->kind = kind;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->probe_id = probe_id;
}
