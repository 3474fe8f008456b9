"""LLM client of the throughput benchmarks (Debian's /usr/bin/python3.11): asks an
OpenAI-compatible model over HTTPS with http.client and the ssl module (OpenSSL's libssl.so.3:
SSL_write_ex / SSL_read_ex), on one keep-alive HTTP/1.1 connection, the way the Python SDKs'
transports do. The same commands as receiver/ebpfreceiver/testdata/gotls, one per line on stdin:

  bench N  -> "ok bench SECONDS" (N chat-completion requests, one after the other)

Usage: python3.11 llmclient.py MODEL_URL CA_FILE MODEL
"""

import http.client
import json
import ssl
import sys
import time
import urllib.parse


def main():
    url, ca, model = sys.argv[1], sys.argv[2], sys.argv[3]
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "tools": [{"type": "function", "function": {"name": "customer-data-export"}}],
    }).encode()
    headers = {"Content-Type": "application/json"}

    def ask():
        conn.request("POST", u.path, body, headers)
        resp = conn.getresponse()
        out = json.loads(resp.read())
        if resp.status != 200 or not out.get("choices"):
            raise RuntimeError("HTTP %d: %r" % (resp.status, out))
        return out["choices"][0].get("finish_reason")

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd != "bench":
            continue
        n = int(arg)
        start = time.perf_counter()
        try:
            for _ in range(n):
                ask()
        except Exception as e:  # reported to the harness, which fails the run
            print("error", e, flush=True)
        print("ok bench %.6f" % (time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
