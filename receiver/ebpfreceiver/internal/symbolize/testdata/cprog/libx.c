/* libx is a tiny shared library for the symbolizer tests. The "@name"
 * comments mark lines the tests look up. */
#include <stdio.h>
#include "libx.h"

static int libx_static(int x) { return x * 3 + 1; } /* @def_libx_static */

__attribute__((noinline)) void *libx_fn(libx_cb cb) { /* @def_libx_fn */
	void *r = cb(); /* @call_cb */
	return r;
}

void libx_print(void) {
	printf("libx_static=%p libx_fn=%p\n", (void *)libx_static, (void *)libx_fn);
	fflush(stdout);
}
