// Package symbolize turns raw user-space instruction addresses of a traced
// process (as captured by bpf_get_stackid with BPF_F_USER_STACK) into
// function names, source files and line numbers.
//
// A [Symbolizer] keeps two kinds of state:
//
//   - per process: the executable mappings read from /proc/<pid>/maps. They
//     are read by [Symbolizer.Prepare] (ideally when the process is first
//     seen, so that short-lived processes can be symbolized after they exit),
//     lazily by [Symbolizer.Symbolize] for processes that were never
//     prepared, and re-read (at most once per second per process) when an
//     address falls outside every known mapping. [Symbolizer.Forget] drops
//     them.
//   - per binary: symbol tables keyed by the binary's identity (GNU build id,
//     else Go build id, else device+inode+size+mtime of the file), shared by
//     all processes that map the same binary and bounded by
//     [Options.MaxBinaries] with least-recently-used eviction.
//
// Supported binaries: Go executables (function, file and line from
// .gopclntab via debug/gosym; inlined frames are reported as their outermost
// non-inlined function), and native ELF executables and shared libraries,
// PIE or not (function from .symtab/.dynsym, file and line from the DWARF
// line table when the file carries .debug_line; DWARF is parsed lazily on
// the first lookup that needs it). The [vdso] is read from the process'
// memory and symbolized through its .dynsym.
//
// Binaries and maps files are a traced process's choice and read as hostile
// input: a symbol table, .gopclntab or .eh_frame is read only within
// elfinfo's limits (256 MiB a section, 2Mi symbols, 1Mi Go functions, 512 MiB
// of DWARF); a line table keeps at most 4Mi rows; /proc/<pid>/maps is read up
// to 8 MiB and 65536 mappings. Panics of debug/elf, debug/dwarf, debug/gosym
// and the .eh_frame parser on crafted files are recovered. A table left out
// counts in [Stats].BinariesMalformed (its frames lack names, lines or leaf
// callers), a cut maps file in [Stats].MapsTruncated.
package symbolize
