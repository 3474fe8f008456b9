// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Records sent from the kernel programs to user space through the `events` ring buffer.
// bpf2go generates the Go mirror of every struct here (-type), so this file is the only
// definition of the contract. Structs are not packed: fields are padded explicitly so the
// C and Go layouts agree, which a Go test checks against the object's BTF.
#pragma once

#define MAX_ARGS 4
#define ARG_BYTES 256
#define PATH_BYTES 256
#define ARGV_BYTES 512
#define ARGV_ARG_BYTES 128
#define MAX_ARGV 16
#define STACK_DEPTH 48

enum event_kind {
	EVENT_FUNC_ENTRY = 1,
	EVENT_FUNC_RETURN = 2,
	EVENT_GOROUTINE_CREATE = 3,
	EVENT_SYSCALL_ENTER = 4,
	EVENT_SYSCALL_EXIT = 5,
	EVENT_PROCESS_EXEC = 6,
	EVENT_PROCESS_EXIT = 7,
	EVENT_PROCESS_FORK = 8,
};

// Argument kinds and registers: the numbering is shared with the Go package elfinfo.
enum arg_kind {
	ARG_NONE = 0,
	ARG_INT = 1,
	ARG_UINT = 2,
	ARG_BOOL = 3,
	ARG_STRING = 4,  // Go string: pointer and length registers
	ARG_BYTES_ = 5,  // Go []byte: pointer and length registers
	ARG_CSTRING = 6, // C char*: pointer register, NUL-terminated
};

enum reg_id {
	REG_NONE = 0,
	REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI,
	REG_R8, REG_R9, REG_R10, REG_R11,
};

enum arg_flags {
	ARG_FLAG_TRUNCATED = 1,   // the value is longer than what was copied
	ARG_FLAG_READ_FAILED = 2, // user memory could not be read
};

// Common head of every record.
struct event_header {
	__u64 ts_ns;        // bpf_ktime_get_ns(): CLOCK_MONOTONIC
	__u64 cgroup_id;    // cgroup v2 id of the task
	__u64 routine;      // Go: address of the goroutine's g; native: 0 (user space keys by tid)
	__u32 kind;         // enum event_kind
	__u32 tgid;         // process id
	__u32 tid;          // thread id
	__u32 probe_id;     // function probes: index into user space's probe table; syscalls: syscall number
};

// EVENT_FUNC_ENTRY without captured arguments, and EVENT_FUNC_RETURN.
struct func_event {
	struct event_header hdr;
};

struct func_arg {
	__u64 num;      // scalar value, or the full length of a string/byte slice
	__u32 captured; // bytes copied into data
	__u8 kind;      // enum arg_kind
	__u8 flags;     // enum arg_flags
	__u8 _pad[2];
	__u8 data[ARG_BYTES];
};

// EVENT_FUNC_ENTRY of a probe that captures arguments.
struct func_args_event {
	struct event_header hdr;
	struct func_arg args[MAX_ARGS];
};

// EVENT_GOROUTINE_CREATE: runtime.newproc1 returned; hdr.routine is the creating goroutine.
struct goroutine_event {
	struct event_header hdr;
	__u64 child;
};

// EVENT_SYSCALL_ENTER of a traced process (connect, accept, sendto, execve, openat).
struct syscall_event {
	struct event_header hdr;
	__s64 fd;            // connect/sendto/accept: socket fd; openat: dirfd
	__u64 flags;         // openat flags
	__u16 family;        // AF_INET/AF_INET6/AF_UNIX of the sockaddr, 0 when none
	__u16 port;          // host byte order
	__u32 path_len;      // bytes in path (without NUL); for execve the executable path
	__u8 addr[16];       // IPv4 in the first 4 bytes, or IPv6
	__u32 argv_len;      // bytes used in argv (NUL separated)
	__u16 argc;          // arguments copied
	__u8 truncated;      // 1: path, argv or the argument count was cut at the bound
	__u8 _pad0;
	__u32 stack_len;     // frames in stack
	__u32 _pad1;
	__u8 path[PATH_BYTES];
	__u8 argv[ARGV_BYTES];
	__u64 stack[STACK_DEPTH]; // user-space return addresses, innermost first
};

// EVENT_SYSCALL_EXIT of a traced process for a syscall that had an EVENT_SYSCALL_ENTER.
struct syscall_exit_event {
	struct event_header hdr;
	__s64 ret;
	__u16 family; // accept: the peer's address
	__u16 port;
	__u32 _pad;
	__u8 addr[16];
};

// EVENT_PROCESS_EXEC (every exec on the host: user space matches targets by name and container),
// EVENT_PROCESS_EXIT and EVENT_PROCESS_FORK (traced processes only).
struct process_event {
	struct event_header hdr;
	__u32 child_tgid; // fork: the new process
	__u32 target_id;  // non-zero when the kernel already marks the process as traced
	__u32 filename_len;
	__u32 _pad;
	__u8 filename[PATH_BYTES];
};
