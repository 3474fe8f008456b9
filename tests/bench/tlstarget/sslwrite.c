// sslwrite: the TLS target of the overhead benchmarks. Connects with OpenSSL (libssl.so.3) to a
// TLS server on 127.0.0.1:PORT and completes the handshake, waits for a line on stdin (so the
// harness can attach probes first), then runs REPS repetitions of N SSL_write calls of SIZE
// bytes and prints each repetition's nanoseconds per call, one per line.
// After the handshake the connection writes into a memory BIO (emptied as it fills) instead of
// the socket: SSL_write then encrypts and frames the record but makes no syscall, so the cost of
// a probe on it is not buried in the noise of loopback TCP.
// Usage: sslwrite PORT N REPS [SIZE]
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
		fprintf(stderr, "usage: sslwrite PORT N REPS [SIZE]\n");
		return 2;
	}
	int port = atoi(argv[1]), n = atoi(argv[2]), reps = atoi(argv[3]);
	int size = argc > 4 ? atoi(argv[4]) : 64;
	char buf[4096], line[16];
	if (size < 1 || size > (int)sizeof(buf))
		size = 64;
	memset(buf, 'x', sizeof(buf));

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); // the harness's throwaway certificate
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		perror("connect");
		return 1;
	}
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	BIO *mem = BIO_new(BIO_s_mem());
	SSL_set0_wbio(ssl, mem); // the SSL object owns it now
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (int r = 0; r < reps; r++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < n; i++) {
			if (SSL_write(ssl, buf, size) <= 0) {
				ERR_print_errors_fp(stderr);
				return 1;
			}
			if ((i & 255) == 255)
				(void)BIO_reset(mem);
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
