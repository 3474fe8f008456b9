/* prog is a test fixture for the elfinfo package: the tests build it with
 * gcc -g -O1 and inspect it; they never run it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct small { int a; long b; };     /* 16 bytes: two INTEGER eightbytes */
struct big { long a, b, c; };        /* 24 bytes: passed in memory */
struct mixed { double d; int i; };   /* SSE + INTEGER */
enum color { RED, GREEN, BLUE };

/* name=RDI count=RSI big=RDX */
__attribute__((noinline)) int process(const char *name, int count, long big) {
	return (int)strlen(name) * count + (int)big;
}

/* on=RDI level=RSI id=RDX buf=RCX delta=R8 tiny=R9 */
__attribute__((noinline)) unsigned short flags(bool on, unsigned char level, uint64_t id, char *buf, short delta, int8_t tiny) {
	if (on)
		buf[0] = (char)level;
	return (unsigned short)(id + delta + tiny);
}

/* ratio=XMM0 label=RDI f=XMM1 count=RSI: floats do not use integer registers */
__attribute__((noinline)) int after_float(double ratio, const char *label, float f, unsigned count) {
	return (int)(ratio * f) + (int)strlen(label) + (int)count;
}

/* a..f=RDI,RSI,RDX,RCX,R8,R9 g=stack */
__attribute__((noinline)) long seven(long a, long b, long c, long d, long e, long f, long g) {
	return a + b * c - d + e * f - g;
}

/* s=RDI,RSI tag=RDX b=memory n=RCX */
__attribute__((noinline)) long with_struct(struct small s, const char *tag, struct big b, int n) {
	return s.a + s.b + (long)strlen(tag) + b.a + b.c + n;
}

/* hidden result pointer=RDI x=RSI why=RDX */
__attribute__((noinline)) struct big make_big(int x, const char *why) {
	struct big b = {x, (long)strlen(why), x * 2};
	return b;
}

/* m=XMM0+RDI k=RSI c=RDX p=RCX */
__attribute__((noinline)) long with_mixed(struct mixed m, long k, enum color c, int *p) {
	return (long)m.d + m.i + k + (long)c + *p;
}

/* two return paths */
__attribute__((noinline)) int classify(int n) {
	if (n < 0) {
		fprintf(stderr, "negative %d\n", n);
		return -1;
	}
	return n * 2;
}

/* ignored=RDI n=RSI; but clang -O2 deletes the unused argument of this
 * internal function and passes n in RDI. */
static __attribute__((noinline)) int skip_first(const char *ignored, int n) {
	return n * 3;
}

int main(int argc, char **argv) {
	char buf[8] = {0};
	struct small s = {1, 2};
	struct big b = {1, 2, 3};
	struct mixed m = {1.5, 2};
	int v = argc;
	struct big r = make_big(argc, argv[0]);
	printf("%d %u %d %ld %ld %ld %ld %d %d\n",
	       process(argv[0], argc, 3),
	       flags(argc > 1, 2, 3, buf, -4, 5),
	       after_float(0.5, argv[0], 2.0f, 3),
	       seven(1, 2, 3, 4, 5, 6, argc),
	       with_struct(s, argv[0], b, argc),
	       r.c,
	       with_mixed(m, 3, BLUE, &v),
	       classify(argc - 2),
	       skip_first(argv[0], argc));
	return 0;
}
