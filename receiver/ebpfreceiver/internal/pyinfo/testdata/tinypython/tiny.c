/* A minimal "CPython" for pyinfo's FuzzInspect seed: _PyRuntime, Py_Version (3.11.2) and a
 * python:audit USDT note with a semaphore, in 1.5 KB. Built with
 *   gcc -O1 -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,norelro \
 *       -Wl,-z,noseparate-code -o python3.11 tiny.c && strip --strip-debug -R .comment python3.11
 */
unsigned long long _PyRuntime[8];
const unsigned int Py_Version = 0x030b02f0;
unsigned short python_audit_semaphore __attribute__((section(".probes")));
void _start(void)
{
	__asm__ volatile("990: nop\n"
			 ".pushsection .note.stapsdt,\"\",\"note\"\n"
			 ".balign 4\n"
			 ".4byte 992f-991f, 994f-993f, 3\n"
			 "991: .asciz \"stapsdt\"\n"
			 "992: .balign 4\n"
			 "993: .8byte 990b\n"
			 ".8byte _.stapsdt.base\n"
			 ".8byte python_audit_semaphore\n"
			 ".asciz \"python\"\n"
			 ".asciz \"audit\"\n"
			 ".asciz \"8@%rdi 8@%rsi\"\n"
			 "994: .balign 4\n"
			 ".popsection\n");
	for (;;)
		;
}
__asm__(".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n.weak _.stapsdt.base\n.hidden _.stapsdt.base\n_.stapsdt.base: .space 1\n.size _.stapsdt.base, 1\n.popsection\n");
