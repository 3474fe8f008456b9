# An agent's model client as Python agents write it: Debian's httpx (0.23.3), httpx.Client or
# httpx.AsyncClient under asyncio, over HTTPS (Python's ssl module, OpenSSL) or plain HTTP,
# HTTP/1.1 or HTTP/2 (Debian's h2), a JSON answer or server-sent events. Each line on stdin is
#   <sync|async> <h1|h2> <json|stream> <base URL>
# and is answered "ok <client> <HTTP version> <tool calls>" (async: two calls at once under
# asyncio.gather, as an agent with two prompts in flight makes them).
import asyncio
import json
import sys

import httpx

CA = sys.argv[1]
MODEL = sys.argv[2]
TOOLS = [{"type": "function", "function": {"name": "accounts-summary", "description": "Balance of a customer",
          "parameters": {"type": "object", "properties": {"customer_id": {"type": "string"}}}}}]


def body(prompt, stream):
    b = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "tools": TOOLS}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


def tool_names_json(r):
    msg = r.json()["choices"][0]["message"]
    return [c["function"]["name"] for c in msg.get("tool_calls") or []]


def tool_names_event(line, names):
    line = line.rstrip("\r\n")  # httpx 0.23's iter_lines keeps the line's end
    if not line.startswith("data: ") or line == "data: [DONE]":
        return
    for ch in json.loads(line[6:]).get("choices") or []:
        for c in ch.get("delta", {}).get("tool_calls") or []:
            if c.get("function", {}).get("name"):
                names.append(c["function"]["name"])


def call_model(client, url, prompt, stream):
    if not stream:
        r = client.post(url, json=body(prompt, False))
        r.raise_for_status()
        return r.http_version, tool_names_json(r)
    names = []
    with client.stream("POST", url, json=body(prompt, True)) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            tool_names_event(line, names)
    return r.http_version, names


async def call_model_async(client, url, prompt, stream):
    if not stream:
        r = await client.post(url, json=body(prompt, False))
        r.raise_for_status()
        return r.http_version, tool_names_json(r)
    names = []
    async with client.stream("POST", url, json=body(prompt, True)) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            tool_names_event(line, names)
    return r.http_version, names


async def two_prompts(url, http2, stream):
    async with httpx.AsyncClient(verify=CA, http2=http2, timeout=20) as client:
        return await asyncio.gather(
            call_model_async(client, url, "What is the balance of C1001?", stream),
            call_model_async(client, url, "What is the balance of C1002?", stream))


def main():
    print("ready", flush=True)
    for line in sys.stdin:
        mode, version, kind, base = line.split()
        url = base + "/chat/completions"
        http2, stream = version == "h2", kind == "stream"
        if mode == "sync":
            with httpx.Client(verify=CA, http2=http2, timeout=20) as client:
                results = [call_model(client, url, "What is the balance of C1001?", stream)]
        else:
            results = asyncio.run(two_prompts(url, http2, stream))
        print("ok", mode, ",".join(sorted({v for v, _ in results})),
              ",".join(n for _, names in results for n in names), flush=True)


main()
