"""Python target of the overhead benchmarks (Debian's /usr/bin/python3.11).

Usage: python3.11 audit.py MODE N REPS. Waits for a line on stdin (so the harness can attach
probes first), then runs REPS repetitions of N operations, each firing one CPython audit event,
and prints each repetition's nanoseconds per operation, one per line:
  socket  socket.socket() + close(): the audit event "socket.__new__"; the socket and close
          syscalls are not among those the receiver records
  open    open("/dev/null", "rb") + close(): the audit event "open", and an openat syscall
  frame   sys._getframe(): the audit event "sys._getframe" and no syscall, so that the cost of
          a probe stands out of the noise of the operation itself
"""

import socket
import sys
import time


def main():
    mode, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.stdin.readline()
    for _ in range(reps):
        start = time.perf_counter_ns()
        if mode == "socket":
            for _ in range(n):
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        elif mode == "open":
            for _ in range(n):
                open("/dev/null", "rb").close()
        elif mode == "frame":
            for _ in range(n):
                sys._getframe()
        else:
            sys.exit("unknown mode " + mode)
        print(f"{(time.perf_counter_ns() - start) / n:.1f}", flush=True)


if __name__ == "__main__":
    main()
