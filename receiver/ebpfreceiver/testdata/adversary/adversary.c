// adversary is a traced process that works against the tracer, for the receiver's adversarial
// kernel test. Every workload is bounded.
//
//	adversary forks N     N times: fork, the child execs "adversary exit", wait for it
//	adversary bigargv N   N times: fork, the child execs itself with 128 KiB of arguments
//	adversary longpath N  N times: openat and execve a 4 KiB path (both fail: ENAMETOOLONG)
//	adversary wait        print "ready", then wait for a line on stdin
//	adversary exit        exit at once
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void spawn(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int n = argc > 2 ? atoi(argv[2]) : 1;
	if (!strcmp(argv[1], "exit"))
		return 0;
	if (!strcmp(argv[1], "wait")) {
		char line[64];
		printf("ready\n");
		fflush(stdout);
		return fgets(line, sizeof line, stdin) ? 0 : 1;
	}
	if (!strcmp(argv[1], "forks")) {
		char *args[] = {"adversary", "exit", NULL};
		for (int i = 0; i < n; i++)
			spawn(args);
		return 0;
	}
	if (!strcmp(argv[1], "bigargv")) {
		enum { ARGS = 32, ARG_BYTES = 4096 }; // 128 KiB in all
		char *args[ARGS + 3] = {"adversary", "exit"};
		for (int i = 0; i < ARGS; i++) {
			args[i + 2] = malloc(ARG_BYTES);
			memset(args[i + 2], 'A' + i % 26, ARG_BYTES - 1);
			args[i + 2][ARG_BYTES - 1] = 0;
		}
		args[ARGS + 2] = NULL;
		for (int i = 0; i < n; i++)
			spawn(args);
		return 0;
	}
	if (!strcmp(argv[1], "longpath")) {
		char path[4097];
		for (int i = 0; i < 4096; i++)
			path[i] = i % 64 == 0 ? '/' : 'p';
		path[4096] = 0;
		char *args[] = {path, NULL};
		for (int i = 0; i < n; i++) {
			int fd = openat(AT_FDCWD, path, O_RDONLY);
			if (fd >= 0)
				close(fd);
			execv(path, args); // fails: the path is too long
		}
		return 0;
	}
	return 2;
}
