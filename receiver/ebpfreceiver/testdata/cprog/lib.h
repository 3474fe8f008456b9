// libagent: a shared library whose function the receiver's tests trace by library path.
#pragma once

int lib_process(const char *text);
