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
// Words copied from the top of the user stack at a syscall (see syscall_event.stack_top).
#define STACK_TOP_WORDS 16
#define PY_STACK_DEPTH 96    // Python frames walked per stack
#define PY_VALUES 20         // audit argument values decoded per event
#define PY_VALUE_BYTES 128   // bytes of a str/bytes value (or a type name) copied
#define AUDIT_NAME_BYTES 64
#define TLS_MAX_CAPTURE 65536 // plaintext bytes of one TLS call sent at most
#define FD_IO_MAX_CAPTURE 65536 // payload bytes of one socket or pipe I/O sent at most
#define FD_IO_DNS_CAPTURE 512   // bytes of a DNS message sent, whatever the plaintext bound
#define FD_IO_MAX_MMSG 8        // sendmmsg/recvmmsg entries whose lengths are summed
#define FD_IO_MAX_IOV 16        // buffers of a writev/readv or sendmsg/recvmsg whose data is captured

enum event_kind {
	EVENT_FUNC_ENTRY = 1,
	EVENT_FUNC_RETURN = 2,
	EVENT_GOROUTINE_CREATE = 3,
	EVENT_SYSCALL_ENTER = 4,
	EVENT_SYSCALL_EXIT = 5,
	EVENT_PROCESS_EXEC = 6,
	EVENT_PROCESS_EXIT = 7,
	EVENT_PROCESS_FORK = 8,
	EVENT_PYTHON_STACK = 9,
	EVENT_PYTHON_AUDIT = 10,
	EVENT_TLS_DATA = 11,
	EVENT_THREAD_EXIT = 12,
	EVENT_FD_IO = 13,
	EVENT_PYTHON_CORO_END = 14, // struct python_coro_end_event (bpf/python/python.c)
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
	// Only in USDT argument specs (internal/usdt): appended so the numbering above stays.
	REG_R12, REG_R13, REG_R14, REG_R15, REG_RBP, REG_RSP,
	REG_COUNT,
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
	// Not Go, with stacks: the user stack pointer and the stack's first words from it, so that
	// user space finds the return address of a leaf without a frame pointer (a C library
	// syscall wrapper), which the frame-pointer walk skips. sp is 0 when not read.
	__u64 sp;
	__u64 stack_top[STACK_TOP_WORDS];
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
	// connect (fd) and accept (the new fd): the socket's identity, as EVENT_FD_IO records carry
	// it, so user space knows which later I/O went over this connection. 0 when not a socket.
	__u64 sock; // struct sock *
	__u64 ino;  // the socket's inode number
	// The socket's own address and network namespace (both ends of a connection, with the
	// peer above for accept: what the gateway joins a server's story to its client's by).
	__u8 local[16];
	__u16 local_family;
	__u16 local_port;
	__u32 netns;
};

// EVENT_PROCESS_EXEC (every exec on the host: user space matches targets by name and container),
// EVENT_PROCESS_EXIT, EVENT_THREAD_EXIT (hdr.tid is the thread) and EVENT_PROCESS_FORK (traced
// processes only).
struct process_event {
	struct event_header hdr;
	__u32 child_tgid; // fork: the new process
	__u32 target_id;  // non-zero when the kernel already marks the process as traced
	__u32 filename_len;
	__u32 _pad;
	__u8 filename[PATH_BYTES];
};

// One Python frame: the code object and the instruction offset (in code units) of the frame's
// last executed instruction. User space reads the code object's names and line table from the
// process's memory (cached by address), which keeps the kernel side simple and bounded.
struct py_frame {
	__u64 code;  // PyCodeObject *
	__u64 frame; // the _PyInterpreterFrame itself: identifies one activation across samples
	__s32 lasti; // code units from the start of the bytecode; -1 before the first instruction
	__u32 _pad;
};

enum py_stack_status {
	PY_STACK_OK = 0,
	PY_STACK_TRUNCATED = 1,      // deeper than PY_STACK_DEPTH: the outermost frames are missing
	PY_STACK_NO_THREAD = 2,      // no Python thread state for this thread (not a Python thread)
	PY_STACK_READ_FAILED = 3,    // interpreter memory could not be read
};

// EVENT_PYTHON_STACK: the Python call stack of the thread, sent right before the record it
// belongs to (an audit event, a syscall, a TLS read or write) by the same thread. The record is
// sent with only `depth` frames (bpf_ringbuf_output), so it is often shorter than the struct.
struct python_stack_event {
	struct event_header hdr;
	__u32 depth;  // frames in frames, innermost first
	__u16 status; // enum py_stack_status
	__u16 layout; // interpreter layout id (user space's table)
	struct py_frame frames[PY_STACK_DEPTH];
};

enum py_type {
	PY_T_OTHER = 0, // data holds the type's name
	PY_T_NONE = 1,
	PY_T_BOOL = 2,
	PY_T_INT = 3,
	PY_T_STR = 4,
	PY_T_BYTES = 5,
	PY_T_TUPLE = 6,
	PY_T_LIST = 7,
	PY_T_DICT = 8,
	PY_T_BYTEARRAY = 9,
};

enum py_value_flags {
	PY_V_TRUNCATED = 1,   // data holds a prefix, or a container's items were cut
	PY_V_READ_FAILED = 2,
	PY_V_UNSUPPORTED = 4, // a representation the kernel side does not decode (legacy strings, big ints)
};

// One decoded Python value of an audit event's arguments, in pre-order: the arguments tuple's
// items (parent 0xff) and, one level down, the items of those that are tuples, lists or dicts
// (dicts as key, value, key, value...).
struct py_value {
	__s64 num;    // int and bool value
	__u32 len;    // str: characters; bytes: bytes; containers: items
	__u8 type;    // enum py_type
	__u8 parent;  // index of the containing value, 0xff for an argument
	__u8 flags;   // enum py_value_flags
	__u8 kind;    // str: bytes per character (1, 2, 4); 1 and ASCII when `ascii`
	__u8 ascii;
	__u8 _pad[3];
	__u32 captured; // bytes in data
	__u8 data[PY_VALUE_BYTES];
};

// EVENT_PYTHON_AUDIT: CPython's `audit` USDT probe (sys.audit and the interpreter's own audit
// events: socket.connect, open, subprocess.Popen, urllib.Request, ...). hdr.probe_id is the
// interpreter binary's index in user space's table.
struct python_audit_event {
	struct event_header hdr;
	__u32 name_len;
	__u32 nvalues;   // entries used in values
	__u32 nargs;     // items of the arguments tuple
	__u8 args_flags; // enum py_value_flags for the tuple (truncated: more values than PY_VALUES)
	__u8 _pad[3];
	__u8 name[AUDIT_NAME_BYTES];
	struct py_value values[PY_VALUES];
};

enum tls_direction {
	TLS_WRITE = 1,
	TLS_READ = 2,
	TLS_CLOSE = 3, // the connection object is freed or closed (no data): its address may be reused
};

enum tls_source {
	TLS_OPENSSL = 1,
	TLS_GO = 2,
};

enum tls_flags {
	TLS_F_TRUNCATED = 1, // the call moved more bytes than the capture bound: the rest is not sent
	TLS_F_READ_FAILED = 2,
	// A Go (*Conn).Read returned that was already in flight when the probes were attached: its
	// data and connection are unknown (conn 0, nothing captured), only its size and goroutine.
	TLS_F_UNSEEN = 4,
	// A write longer than the capture bound: data holds its first captured - tail bytes and its
	// last tail bytes; the bytes between were not read.
	TLS_F_TAIL = 8,
};

// A write is sent as head and tail only when the capture bound is at least this.
#define TLS_TAIL_MIN_CAPTURE 1024

// EVENT_TLS_DATA: plaintext passed to or returned by one TLS write or read call, up to the
// configured capture bound (sent with only `captured` bytes of data).
struct tls_event {
	struct event_header hdr;
	__u64 conn;     // SSL * (OpenSSL) or *tls.Conn (Go): the connection
	__u32 len;      // bytes the call moved in total
	__u32 captured; // bytes in data
	__u8 direction; // enum tls_direction
	__u8 source;    // enum tls_source
	__u8 flags;     // enum tls_flags
	__u8 _pad;
	__u32 tail;     // TLS_F_TAIL: the last bytes of data are the call's last bytes
	__u8 data[TLS_MAX_CAPTURE];
};

enum fd_io_direction {
	FD_IO_SEND = 1,
	FD_IO_RECV = 2,
};

enum fd_io_kind {
	FD_IO_TCP = 1,
	FD_IO_UDP = 2,
	FD_IO_UNIX = 3,
	FD_IO_PIPE = 4,
	FD_IO_OTHER = 5, // another family (netlink, packet) or protocol (raw, SCTP)
};

enum fd_io_flags {
	FD_IO_F_PEER_UNKNOWN = 1, // an IP socket whose peer is neither connected nor in the call's address
	FD_IO_F_TRUNCATED = 2,    // sendmmsg/recvmmsg moved more than FD_IO_MAX_MMSG messages: bytes counts only those
	FD_IO_F_PAYLOAD_CUT = 4,  // the call moved more bytes than were captured (or than the first buffer held)
	FD_IO_F_READ_FAILED = 8,  // the data or an argument could not be read from user memory
	FD_IO_F_DNS = 16,         // captured because the peer port is the DNS port
	FD_IO_F_PLAIN = 32,       // captured because the socket or pipe carries a plaintext protocol
	FD_IO_F_IOV_CUT = 64,     // the call's data went on past FD_IO_MAX_IOV buffers, within the capture bound: not captured
};

// EVENT_FD_IO: one send or receive of a traced process on a socket (or on a pipe that carries a
// plaintext protocol), after it returned more than 0 bytes. Sent with only `captured` bytes of
// data.
struct fd_io_event {
	struct event_header hdr; // probe_id: the syscall number
	__u64 sock;        // struct sock *: the socket's identity while it lives (0 for a pipe)
	__u64 ino;         // inode number of the socket or pipe
	__u64 bytes;       // bytes the call moved (sendmmsg/recvmmsg: summed over the messages)
	__s32 fd;
	__u32 netns;       // network namespace inode of the socket
	__u16 family;      // AF_INET, AF_INET6, AF_UNIX, ... (0 for a pipe)
	__u16 peer_port;   // host byte order
	__u16 local_port;  // host byte order
	__u8 direction;    // enum fd_io_direction
	__u8 kind;         // enum fd_io_kind
	__u8 flags;        // enum fd_io_flags
	__u8 _pad[3];
	__u32 captured;    // bytes in data
	__u8 peer[16];     // IPv4 in the first 4 bytes, or IPv6; a unix socket's peer's inode number in the first 8 (0: none)
	__u8 local[16];
	__u8 data[FD_IO_MAX_CAPTURE];
};
