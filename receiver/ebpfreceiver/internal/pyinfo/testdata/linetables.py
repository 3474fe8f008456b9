"""Prints the location tables of a few code objects and the line of every instruction, as
CPython itself computes it (co_lines), for pyinfo's tests. Run with the interpreter whose table
format is tested: python3.11 linetables.py > linetables-3.11.json"""
import json
import sys


def simple(a, b):
    c = a + b
    return c * 2


def branches(x):
    total = 0
    for i in range(x):
        if i % 2:
            total += i
        else:
            total -= (
                i
                * 3
            )
    while total > 100:
        total //= 2
    return total


class Agent:
    def handle_prompt(self, prompt):
        words = [w.upper() for w in prompt.split()]
        try:
            result = {
                "n": len(words),
                "first": words[0] if words else None,
            }
        except Exception as exc:  # noqa
            raise RuntimeError("bad") from exc
        return result

    async def run(self):
        return await self.other()


def far_jumps():
    x = 0
    # many lines apart to force long-form deltas



















    x += 1




















    return x


SRC = "def generated():\n" + "".join(f"    v{i} = {i}\n" for i in range(300)) + "    return v299\n"
ns = {}
exec(compile(SRC, "<generated>", "exec"), ns)


def entry(fn):
    code = fn.__code__
    lines = []
    for start, end, line in code.co_lines():
        for off in range(start, end, 2):
            lines.append([off // 2, -1 if line is None else line])
    return {
        "qualname": code.co_qualname,
        "firstlineno": code.co_firstlineno,
        "linetable": code.co_linetable.hex(),
        "lines": lines,
    }


out = {
    "version": "%d.%d" % sys.version_info[:2],
    "codes": [entry(f) for f in (simple, branches, Agent.handle_prompt, Agent.run, far_jumps, ns["generated"])],
}
json.dump(out, sys.stdout, indent=1)
