// taxtarget: an untraced process's syscalls for the node-wide tax (tests/bench/tax.go). It waits
// for a line on stdin (so the harness can load the collector's programs first), then runs REPS
// repetitions of N operations of MODE and prints each repetition's nanoseconds per operation,
// one per line. C and raw syscall(2), so that nothing but the syscall is timed; the time is the
// thread's CPU time (user and system), so that what other processes of a busy machine take of
// the CPU in the meantime is not counted.
//   getppid  one syscall the collector never needs
//   open     openat + close of /dev/null (openat is one the collector traces)
//   write    a 64-byte write(2) to /dev/null (write is one the socket I/O programs look at)
//   read     a 64-byte read(2) of /dev/zero (read, with inbound socket I/O on)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: tax getppid|open|write|read N REPS\n");
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]), reps = atol(argv[3]);
	if (n <= 0 || reps <= 0) {
		fprintf(stderr, "N and REPS must be positive\n");
		return 2;
	}
	int m = !strcmp(mode, "getppid") ? 0 : !strcmp(mode, "open") ? 1 : !strcmp(mode, "write") ? 2 : !strcmp(mode, "read") ? 3 : -1;
	if (m < 0) {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC), zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (null < 0 || zero < 0) {
		perror("open");
		return 1;
	}
	char buf[64] = {0}, line[16];
	long sum = 0;
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	for (long r = 0; r < reps; r++) {
		double a = now_ns();
		for (long i = 0; i < n; i++) {
			switch (m) {
			case 0:
				sum += syscall(SYS_getppid);
				break;
			case 1: {
				long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
				if (fd >= 0)
					syscall(SYS_close, fd);
				sum += fd;
				break;
			}
			case 2:
				sum += syscall(SYS_write, null, buf, sizeof(buf));
				break;
			case 3:
				sum += syscall(SYS_read, zero, buf, sizeof(buf));
				break;
			}
		}
		printf("%.1f\n", (now_ns() - a) / n);
		fflush(stdout);
	}
	fprintf(stderr, "checksum %ld\n", sum);
	return 0;
}
