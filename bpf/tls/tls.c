// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Plaintext of TLS connections of traced processes, taken where the program hands it to its TLS
// library or gets it back:
//   - OpenSSL: SSL_write/SSL_write_ex/SSL_read/SSL_read_ex (uprobe at entry saves the buffer,
//     uretprobe sends what the call moved). The attach cookie says read or write, and _ex.
//   - Go: crypto/tls.(*Conn).Write at entry (the buffer is complete there) and (*Conn).Read at
//     entry and at every RET instruction (never a uretprobe on Go code); the buffer pointer is
//     saved at entry keyed by goroutine, the byte count is RAX at RET.
// Each call's data goes out in one EVENT_TLS_DATA record, up to tls_capture_bytes (at most
// TLS_MAX_CAPTURE): one read and one copy, no loop; a longer write sends its head and its tail
// (two reads). In Python processes, the thread's Python stack goes out first.
#include "../headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../common/python.h"

char __license[] SEC("license") = "Dual BSD/GPL";


enum ssl_cookie {
	SSL_COOKIE_READ = 1,
	SSL_COOKIE_EX = 2,
};

// Set by user space before load: bytes of one call's data sent at most.
volatile const __u32 tls_capture_bytes = 16384;

struct tls_call {
	__u64 conn;
	__u64 buf;
	__u64 outlen; // _ex: size_t *written / *readbytes
	__u8 direction;
	__u8 ex;
	__u8 _pad[6];
};

// OpenSSL calls in flight, by thread.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct tls_call);
} ssl_calls SEC(".maps");

struct go_key {
	__u32 tgid;
	__u32 _pad;
	__u64 g;
};

// Go (*Conn).Read calls in flight, by goroutine.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_key);
	__type(value, struct tls_call);
} go_reads SEC(".maps");

// One record under construction per CPU (too large for a per-CPU array value); user space sets
// max_entries to the number of possible CPUs.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_event);
} tls_scratch SEC(".maps");

static __always_inline void emit_tls(__u64 conn, __u64 buf, __u64 n, __u8 direction, __u8 source, __u64 routine, __u8 unseen)
{
	if (n == 0)
		return;
	__u32 cpu = bpf_get_smp_processor_id();
	struct tls_event *e = bpf_map_lookup_elem(&tls_scratch, &cpu);
	if (!e)
		return;
	fill_header(&e->hdr, EVENT_TLS_DATA, routine, 0);
	e->conn = conn;
	e->len = n > 0xffffffff ? 0xffffffff : (__u32)n;
	e->direction = direction;
	e->source = source;
	if (unseen) {
		e->flags = TLS_F_UNSEEN;
		e->captured = 0;
		output(e, offsetof(struct tls_event, data), sizeof(*e));
		return;
	}
	e->flags = n > tls_capture_bytes ? TLS_F_TRUNCATED : 0;
	e->tail = 0;
	__u64 sz = n;
	if (sz > tls_capture_bytes)
		sz = tls_capture_bytes;
	asm volatile("" : "+r"(sz));
	if (sz > TLS_MAX_CAPTURE)
		sz = TLS_MAX_CAPTURE;
	// A write longer than the bound: its first three quarters and its last quarter. A request
	// body that puts "model" after a long "messages" (openai-go, OpenAI's Python SDK) keeps
	// it; user space accounts for the bytes between.
	__u64 tail = 0;
	if (direction == TLS_WRITE && n > sz && sz >= TLS_TAIL_MIN_CAPTURE) {
		tail = sz / 4;
		asm volatile("" : "+r"(tail));
		if (tail > TLS_MAX_CAPTURE / 4)
			tail = TLS_MAX_CAPTURE / 4;
		sz -= tail;
		asm volatile("" : "+r"(sz));
		if (sz > TLS_MAX_CAPTURE - TLS_MAX_CAPTURE / 4)
			sz = TLS_MAX_CAPTURE - TLS_MAX_CAPTURE / 4;
	}
	e->captured = sz;
	if (sz && bpf_probe_read_user(e->data, sz, (void *)buf) < 0) {
		e->flags |= TLS_F_READ_FAILED;
		e->captured = 0;
		sz = 0;
		tail = 0;
	}
	if (tail && bpf_probe_read_user(e->data + sz, tail, (void *)(buf + n - tail)) == 0) {
		e->flags |= TLS_F_TAIL;
		e->tail = tail;
		e->captured = sz + tail;
		sz += tail;
	}
	asm volatile("" : "+r"(sz));
	if (sz > TLS_MAX_CAPTURE)
		sz = TLS_MAX_CAPTURE;
	output(e, offsetof(struct tls_event, data) + sz, sizeof(*e));
}

// SSL_write(SSL *s, const void *buf, int num), SSL_read(SSL *s, void *buf, int num),
// SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written), SSL_read_ex(..., size_t *readbytes).
SEC("uprobe/ssl_entry")
int ssl_entry(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	__u32 tid = (__u32)id;
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct tls_call c = {
		.conn = ctx->di,
		.buf = ctx->si,
		.outlen = (cookie & SSL_COOKIE_EX) ? ctx->cx : 0,
		.direction = (cookie & SSL_COOKIE_READ) ? TLS_READ : TLS_WRITE,
		.ex = (cookie & SSL_COOKIE_EX) ? 1 : 0,
	};
	bpf_map_update_elem(&ssl_calls, &tid, &c, BPF_ANY);
	return 0;
}

SEC("uretprobe/ssl_return")
int ssl_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct tls_call *c = bpf_map_lookup_elem(&ssl_calls, &tid);
	if (!c)
		return 0;
	struct tls_call call = *c;
	bpf_map_delete_elem(&ssl_calls, &tid);
	__s64 ret = (__s32)ctx->ax;
	__u64 n = 0;
	if (call.ex) {
		if (ret != 1 || !call.outlen)
			return 0;
		if (bpf_probe_read_user(&n, sizeof(n), (void *)call.outlen) < 0)
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		n = ret;
	}
	if (n == 0)
		return 0;
	emit_python_stack(tgid, tid, 0, PY_SAMPLE_FOR_NEXT);
	emit_tls(call.conn, call.buf, n, call.direction, TLS_OPENSSL, 0, 0);
	return 0;
}

// crypto/tls.(*Conn).Write(b []byte) (int, error): c in RAX, b in RBX/RCX/RDI.
SEC("uprobe/go_tls_write")
int go_tls_write(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	emit_tls(ctx->ax, ctx->bx, ctx->cx, TLS_WRITE, TLS_GO, ctx->r14, 0);
	return 0;
}

// crypto/tls.(*Conn).Read(b []byte) (int, error), at entry.
SEC("uprobe/go_tls_read")
int go_tls_read(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	struct go_key k = {.tgid = id >> 32, .g = ctx->r14};
	struct tls_call c = {.conn = ctx->ax, .buf = ctx->bx, .direction = TLS_READ};
	bpf_map_update_elem(&go_reads, &k, &c, BPF_ANY);
	return 0;
}

// At every RET of (*Conn).Read: n in RAX. A Read without a saved entry was in flight when the
// probes were attached (Go's HTTP client keeps one blocked on every idle connection): user space
// is told its size and goroutine, so that the response it carried is not paired with another
// request.
SEC("uprobe/go_tls_read_ret")
int go_tls_read_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = {.tgid = id >> 32, .g = ctx->r14};
	struct tls_call *c = bpf_map_lookup_elem(&go_reads, &k);
	if (!c) {
		__s64 n = (__s64)ctx->ax;
		if (n > 0 && traced(id >> 32))
			emit_tls(0, 0, n, TLS_READ, TLS_GO, ctx->r14, 1);
		return 0;
	}
	struct tls_call call = *c;
	bpf_map_delete_elem(&go_reads, &k);
	__s64 n = (__s64)ctx->ax;
	if (n <= 0)
		return 0;
	emit_tls(call.conn, call.buf, n, TLS_READ, TLS_GO, ctx->r14, 0);
	return 0;
}

// At every RET of (*Conn).Read, alone: for a program whose Read stores c and b to their ABI
// spill slots in its prologue (user space checks the machine code, elfinfo.SpillsArgsAtEntry),
// they are at 8(SP) and 16(SP) when it returns. One uprobe hit per Read instead of two (the
// trap costs far more than this program), and a Read already in flight when the probes were
// attached carries its data too. A stack that cannot be read makes the record an unseen read,
// as one without its entry in go_tls_read_ret.
SEC("uprobe/go_tls_read_spilled")
int go_tls_read_spilled(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	__s64 n = (__s64)ctx->ax;
	if (n <= 0)
		return 0;
	__u64 args[2]; // c, b's pointer
	if (bpf_probe_read_user(args, sizeof(args), (void *)(ctx->sp + 8)) < 0) {
		emit_tls(0, 0, n, TLS_READ, TLS_GO, ctx->r14, 1);
		return 0;
	}
	emit_tls(args[0], args[1], n, TLS_READ, TLS_GO, ctx->r14, 0);
	return 0;
}

// emit_close tells user space a connection object is gone: what it had pending is over, and a
// new connection at the same address is another one.
static __always_inline void emit_close(__u64 conn, __u8 source, __u64 routine)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct tls_event *e = bpf_map_lookup_elem(&tls_scratch, &cpu);
	if (!e || !conn)
		return;
	fill_header(&e->hdr, EVENT_TLS_DATA, routine, 0);
	e->conn = conn;
	e->len = 0;
	e->captured = 0;
	e->direction = TLS_CLOSE;
	e->source = source;
	e->flags = 0;
	output(e, offsetof(struct tls_event, data), sizeof(*e));
}

// SSL_free(SSL *s).
SEC("uprobe/ssl_free")
int ssl_free(struct pt_regs *ctx)
{
	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 0;
	emit_close(ctx->di, TLS_OPENSSL, 0);
	return 0;
}

// crypto/tls.(*Conn).Close() error: c in RAX.
SEC("uprobe/go_tls_close")
int go_tls_close(struct pt_regs *ctx)
{
	if (!traced(bpf_get_current_pid_tgid() >> 32))
		return 0;
	emit_close(ctx->ax, TLS_GO, ctx->r14);
	return 0;
}

const struct tls_event *unused_tls_event __attribute__((unused));
const enum tls_direction *unused_tls_direction __attribute__((unused));
const enum tls_source *unused_tls_source __attribute__((unused));
const enum tls_flags *unused_tls_flags __attribute__((unused));
const enum ssl_cookie *unused_ssl_cookie __attribute__((unused));
