"""A hostile Python 3.11 process for the ebpf receiver's kernel tests (issue #14): with ctypes it
points fields of its own code objects at forged str and bytes objects, then runs those functions
so that the receiver, resolving their Python stacks from /proc/<pid>/mem, reads the forgeries.
Run by Debian's /usr/bin/python3.11 (the offsets below are 3.11's, checked at start).

    python3.11 forged_code.py

Commands on stdin, one per line; each is answered with one line on stdout:
    forge NAME  -> "ok forge NAME"  (forges the code object of function NAME, then calls it)
    good        -> "ok good LINE"   (calls well_behaved, untouched; LINE: its audit call's line)
    quit        -> leaves without finalisation (the forged objects are never freed)
Every call makes the audit event "agenttrail.test.<function>" (a Python stack at the audit
probe) and opens /etc/hostname (a Python stack at the openat syscall).
"""

import ctypes
import os
import sys

assert sys.version_info[:2] == (3, 11), sys.version

# CPython 3.11 x86-64 (pyinfo's python311 layout).
CODE_FILENAME, CODE_QUALNAME, CODE_LINETABLE = 112, 128, 136
STATE_COMPACT, STATE_ASCII, STATE_READY = 1 << 5, 1 << 6, 1 << 7

keep = []  # the forged objects live as long as the process: the code objects point at them


def u64(addr):
    return ctypes.c_uint64.from_address(addr)


def fake_object(type_obj, size, fields):
    """A buffer laid out as an object of type_obj with an immortal reference count; fields are
    (offset, ctypes type, value)."""
    buf = ctypes.create_string_buffer(size)
    addr = ctypes.addressof(buf)
    u64(addr).value = 1 << 40  # ob_refcnt: never freed
    u64(addr + 8).value = id(type_obj)
    for off, ctype, value in fields:
        ctype.from_address(addr + off).value = value
    keep.append(buf)
    return addr


def fake_str(length, kind, ascii=False, compact=True):
    state = kind << 2 | STATE_READY | (STATE_COMPACT if compact else 0) | (STATE_ASCII if ascii else 0)
    addr = fake_object(str, 256, [(16, ctypes.c_int64, length), (24, ctypes.c_int64, -1), (32, ctypes.c_uint32, state)])
    ctypes.memmove(addr + (48 if ascii else 72), b"f\0\0\0o\0\0\0r\0\0\0g\0\0\0", 16)
    return addr


def fake_bytes(size):
    return fake_object(bytes, 64, [(16, ctypes.c_int64, size), (24, ctypes.c_int64, -1)])


def point(fn, field, addr):
    code = fn.__code__
    slot = id(code) + field
    current = {CODE_FILENAME: code.co_filename, CODE_QUALNAME: code.co_qualname, CODE_LINETABLE: code.co_linetable}[field]
    assert u64(slot).value == id(current), "not CPython 3.11's code object layout"
    u64(slot).value = addr


def observe(name):
    sys.audit("agenttrail.test." + name)
    with open("/etc/hostname") as f:
        f.read()


# One function per forgery: the receiver caches code objects by address.
def qualname_overflow():  # length * kind overflows int64 (the crash of issue #14)
    observe("qualname_overflow")


def qualname_huge():
    observe("qualname_huge")


def qualname_unmapped():
    observe("qualname_unmapped")


def filename_bad_kind():
    observe("filename_bad_kind")


def filename_not_compact():
    observe("filename_not_compact")


def linetable_huge():
    observe("linetable_huge")


def linetable_negative():
    observe("linetable_negative")


def well_behaved():
    observe("well_behaved")  # GOOD LINE


FORGERIES = {
    "qualname_overflow": (CODE_QUALNAME, lambda: fake_str((1 << 61) + 1, 4)),
    "qualname_huge": (CODE_QUALNAME, lambda: fake_str(1 << 40, 1, ascii=True)),
    "qualname_unmapped": (CODE_QUALNAME, lambda: 0x1000),
    "filename_bad_kind": (CODE_FILENAME, lambda: fake_str(4, 3)),
    "filename_not_compact": (CODE_FILENAME, lambda: fake_str(4, 4, compact=False)),
    "linetable_huge": (CODE_LINETABLE, lambda: fake_bytes(1 << 40)),
    "linetable_negative": (CODE_LINETABLE, lambda: fake_bytes(-5)),
}


def main():
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "forge":
            fn = globals()[arg]
            field, make = FORGERIES[arg]
            point(fn, field, make())
            fn()
            print("ok forge", arg, flush=True)
        elif cmd == "good":
            well_behaved()
            print("ok good", well_behaved.__code__.co_firstlineno + 1, flush=True)
        elif cmd == "quit":
            break
    sys.stdout.flush()
    os._exit(0)  # no finalisation: it would release the forged objects


if __name__ == "__main__":
    main()
