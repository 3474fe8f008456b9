// sslread: the SSL_read target of the overhead benchmarks. Connects to a TLS server on
// 127.0.0.1:PORT, first sending it "N*REPS SIZE\n" in the clear (the server then writes that
// many records of SIZE bytes after the handshake and closes), completes the handshake with
// OpenSSL (libssl.so.3), then receives all of the server's ciphertext with recv() into a
// memory BIO and makes it the connection's read BIO. It then waits for a line on stdin (so the
// harness can attach probes first) and runs REPS repetitions of N SSL_read calls of SIZE bytes,
// printing each repetition's nanoseconds per call, one per line.
// SSL_read then decrypts a record that is already in memory: no syscall, and no SSL_write in
// this process at any time (the receiver probes SSL_write too: the records are encrypted by the
// server, another process that does not use OpenSSL).
// Usage: sslread PORT N REPS [SIZE]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: sslread PORT N REPS [SIZE]\n");
		return 2;
	}
	int port = atoi(argv[1]), n = atoi(argv[2]), reps = atoi(argv[3]);
	int size = argc > 4 ? atoi(argv[4]) : 64;
	char buf[16384], line[16], hello[64];
	if (size < 1 || size > (int)sizeof(buf))
		size = 64;
	if (n < 1 || reps < 1)
		return 2;

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); // the harness's throwaway certificate
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		perror("connect");
		return 1;
	}
	int hl = snprintf(hello, sizeof(hello), "%ld %d\n", (long)n * reps, size);
	if (write(fd, hello, hl) != hl) {
		perror("write");
		return 1;
	}
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	// Without read-ahead, OpenSSL has read nothing past the handshake: everything the server
	// sends from here on is the records (and its close_notify), read raw until it closes.
	BIO *mem = BIO_new(BIO_s_mem());
	for (;;) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got < 0) {
			perror("recv");
			return 1;
		}
		if (got == 0)
			break;
		if (BIO_write(mem, buf, (int)got) != got) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
	}
	SSL_set0_rbio(ssl, mem); // the SSL object owns it now
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int r = 0; r < reps; r++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < n; i++) {
			if (SSL_read(ssl, buf, size) != size) {
				fprintf(stderr, "SSL_read: short read or error at %d of repetition %d\n", i, r);
				ERR_print_errors_fp(stderr);
				return 1;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
		fflush(stdout);
	}
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return 0;
}
