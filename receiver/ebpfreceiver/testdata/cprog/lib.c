#include <string.h>

#include "lib.h"

__attribute__((noinline)) int lib_process(const char *text)
{
	return (int)strlen(text);
}
