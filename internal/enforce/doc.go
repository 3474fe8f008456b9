// Package enforce applies a promoted behavioural profile to one workload in the kernel: cgroup
// programs deny outbound connections (TCP and UDP, IPv4 and IPv6) to destinations outside the
// profile with EPERM, and a raw tracepoint kills a process of the workload that tries to exec an
// executable outside the profile. Every denial is reported as a Decision.
//
// The process is killed (SIGKILL from the raw tracepoint, before the new program runs a single
// instruction) because this kernel has no BPF LSM to make the exec fail with an error. IPv4
// destinations are also allowed as IPv4-mapped IPv6 addresses, for dual-stack sockets. Programs
// are attached with links, never pinned: closing the Enforcer (or the process exiting) detaches
// everything.
package enforce

//go:generate go tool bpf2go -tags linux -target amd64 -cc clang -cflags "-O2 -g -Wall -Werror" -type decision -type dest4_key -type dest6_key -type path_key -type decision_kind enforce ../../bpf/enforce/enforce.c -- -I/usr/include/x86_64-linux-gnu
