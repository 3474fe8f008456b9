// prog is a small C program with known functions, traced by the receiver's kernel tests.
// Commands on stdin: "record NAME COUNT", "connect PORT", "lib TEXT" (a shared library
// function), "thread" (starts and joins a thread: libc takes its multi-threaded paths from
// then on), "quit".
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib.h"

__attribute__((noinline)) int send_record(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc;
}

__attribute__((noinline)) int process_record(const char *name, int count)
{
	int sum = 0;
	for (int i = 0; i < count; i++)
		sum += name[i % (strlen(name) + 1)];
	return sum;
}

static void *idle_thread(void *arg)
{
	return arg;
}

int main(void)
{
	char line[512], name[256];
	int n;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		// Results are printed so the compiler cannot drop the calls (they have no other effect).
		if (sscanf(line, "record %255s %d", name, &n) == 2)
			printf("ok %d\n", process_record(name, n));
		else if (sscanf(line, "connect %d", &n) == 1)
			printf("ok %d\n", send_record(n));
		else if (sscanf(line, "lib %255s", name) == 1)
			printf("ok %d\n", lib_process(name));
		else if (strncmp(line, "thread", 6) == 0) {
			pthread_t th;
			printf("ok %d\n", pthread_create(&th, NULL, idle_thread, NULL) || pthread_join(th, NULL));
		} else if (strncmp(line, "quit", 4) == 0)
			return 0;
		else
			printf("ok\n");
	}
	return 0;
}
