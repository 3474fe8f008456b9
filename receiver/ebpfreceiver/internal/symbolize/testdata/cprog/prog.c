/* prog prints code addresses of itself and of libx, then blocks until stdin
 * is closed. Function addresses are printed with %p; return addresses are
 * captured with __builtin_return_address. The "@name" comments mark lines
 * the tests look up. */
#include <stdio.h>
#include "libx.h"

__attribute__((noinline)) void *prog_inner(void) { /* @def_prog_inner */
	return __builtin_return_address(0);
}

__attribute__((noinline)) void *prog_outer(void) { /* @def_prog_outer */
	void *r = prog_inner(); /* @call_inner */
	return r;
}

int main(void) {
	void *ret_in_outer = prog_outer();
	void *ret_in_lib = libx_fn(prog_inner);
	printf("prog_inner=%p prog_outer=%p ret_in_outer=%p ret_in_lib=%p puts=%p\n",
	       (void *)prog_inner, (void *)prog_outer, ret_in_outer, ret_in_lib,
	       (void *)puts);
	libx_print();
	fflush(stdout);
	while (getchar() != EOF) {
	}
	return 0;
}
