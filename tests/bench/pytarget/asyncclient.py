"""Asyncio LLM client of the throughput benchmarks (Debian's /usr/bin/python3.11 with Debian's
python3-aiohttp): CONCURRENCY tasks on one event loop ask an OpenAI-compatible model over HTTPS
at the same time through one aiohttp ClientSession (a pool of keep-alive HTTP/1.1 connections;
asyncio's SSL transport: the ssl module's SSLObject over memory BIOs, OpenSSL's SSL_write_ex /
SSL_read_ex), the way async Python agents call their models. The same commands as llmclient.py,
one per line on stdin:

  bench N  -> "ok bench SECONDS" (N chat-completion requests, CONCURRENCY at a time)

Usage: python3.11 asyncclient.py MODEL_URL CA_FILE MODEL CONCURRENCY
"""

import asyncio
import json
import ssl
import sys
import time

import aiohttp


async def main():
    url, ca, model, conc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ctx = ssl.create_default_context(cafile=ca)
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "tools": [{"type": "function", "function": {"name": "customer-data-export"}}],
    })
    headers = {"Content-Type": "application/json"}
    conn = aiohttp.TCPConnector(ssl=ctx, limit=conc)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def ask():
            async with session.post(url, data=body, headers=headers) as resp:
                out = json.loads(await resp.read())
                if resp.status != 200 or not out.get("choices"):
                    raise RuntimeError("HTTP %d: %r" % (resp.status, out))

        async def worker(n):
            for _ in range(n):
                await ask()

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd, _, arg = line.decode().strip().partition(" ")
            if cmd != "bench":
                continue
            n = int(arg)
            start = time.perf_counter()
            try:
                # n requests split over conc tasks running at once.
                await asyncio.gather(*(worker(n // conc + (1 if i < n % conc else 0)) for i in range(conc)))
            except Exception as e:  # reported to the harness, which fails the run
                print("error", e, flush=True)
            print("ok bench %.6f" % (time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
