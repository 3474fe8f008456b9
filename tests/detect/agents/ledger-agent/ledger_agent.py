"""ledger-agent: the Python agent of the detection corpus (tests/detect).

A bookkeeping assistant with its own tools. It asks a model (OpenAI chat completions over plain HTTP) what to do with
a message and runs the tools the model picks until the model answers. Standard library only.
"""

import http.client
import json
import socket
import struct
import subprocess
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Connections:
    """Keep-alive HTTP connections per host, reused across requests as real clients do."""

    def __init__(self):
        self.conns = {}

    def request(self, method, url, body=None):
        u = urllib.parse.urlsplit(url)
        key = (u.hostname, u.port)
        for attempt in range(2):
            conn = self.conns.get(key)
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
                self.conns[key] = conn
            try:
                conn.request(method, u.path or "/", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                del self.conns[key]
                if attempt == 1:
                    raise
        return 0, b""


class Model:
    def __init__(self, url, conns):
        self.url = url
        self.conns = conns

    def complete(self, messages):
        body = json.dumps({"model": "ledger-model", "messages": messages}).encode()
        status, data = self.conns.request("POST", self.url, body)
        msg = json.loads(data)["choices"][0]["message"]
        calls = msg.get("tool_calls") or []
        if not calls:
            return {"content": msg.get("content") or ""}
        fn = calls[0]["function"]
        return {"tool": fn["name"], "args": json.loads(fn.get("arguments") or "{}")}


def dns_query(qid, name):
    out = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        label = label[:63].encode()
        out += bytes([len(label)]) + label
    return out + b"\x00\x00\x01\x00\x01"


class Tools:
    def __init__(self, conns, resolver):
        self.conns = conns
        self.resolver = resolver

    def run(self, tool, args):
        fn = {
            "ledger-read": self.read_ledger,
            "statement-upload": self.upload_statement,
            "audit-command": self.run_audit,
            "vendor-domains": self.lookup_domains,
            "policy-fetch": self.fetch_policy,
        }.get(tool)
        if fn is None:
            return "no such tool: " + tool
        return fn(args)

    def read_ledger(self, args):
        try:
            with open(args.get("path", ""), "r", errors="replace") as f:
                return f.read()
        except OSError as e:
            return str(e)

    def upload_statement(self, args):
        body = args.get("text", "").encode()
        if args.get("path"):
            try:
                with open(args["path"], "rb") as f:
                    body = f.read()
            except OSError as e:
                return str(e)
        try:
            status, _ = self.conns.request("POST", args.get("url", ""), body)
        except OSError as e:
            return str(e)
        return "sent %d bytes: %d" % (len(body), status)

    def run_audit(self, args):
        command = args.get("command", "")
        if command.startswith("sh:"):
            argv = ["/bin/sh", "-c", command[3:]]
        else:
            argv = command.split()
        try:
            return subprocess.run(argv, capture_output=True, timeout=20).stdout.decode(errors="replace")
        except (OSError, subprocess.SubprocessError) as e:
            return str(e)

    def lookup_domains(self, args):
        host, port = self.resolver
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = 0
        try:
            for i, name in enumerate(args.get("names", "").split(",")):
                s.sendto(dns_query(i + 1, name.strip()), (host, port))
                n += 1
        finally:
            s.close()
        return "%d queries sent" % n

    def fetch_policy(self, args):
        try:
            status, data = self.conns.request("GET", args.get("url", ""))
        except OSError as e:
            return str(e)
        return data.decode(errors="replace")


class Agent:
    def __init__(self, model, tools):
        self.model = model
        self.tools = tools

    def handle_prompt(self, prompt):
        messages = [{"role": "user", "content": prompt}]
        for _ in range(6):
            d = self.model.complete(messages)
            if not d.get("tool"):
                return d.get("content", "")
            messages.append({"role": "tool", "content": self.tools.run(d["tool"], d.get("args") or {})})
        return "too many steps"


def main():
    listen, model_url, resolver, ready = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    conns = Connections()
    rhost, rport = resolver.rsplit(":", 1)
    agent = Agent(Model(model_url, conns), Tools(conns, (rhost, int(rport))))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(min(n, 1 << 20)) or b"{}")
            out = json.dumps({"reply": agent.handle_prompt(req.get("message", ""))}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    host, port = listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    with open(ready, "w") as f:
        f.write("%s:%d" % srv.server_address)
    srv.serve_forever()


if __name__ == "__main__":
    main()
