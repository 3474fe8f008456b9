// Package enforcement is the processor's side of kernel enforcement (mode enforce): it attaches
// the kernel programs of internal/enforce to the cgroups of workloads with a complete profile,
// keeps them in step with the profiles and modes, and matches the kernel's decisions to the
// stories they belong to. It is the only package of the processor that imports the kernel
// package, so that edge is visible in one place.
package enforcement
