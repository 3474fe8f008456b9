"""A small customer-service agent for the ebpf receiver's kernel tests: stdlib only, run by
Debian's /usr/bin/python3.11. It asks an OpenAI-compatible model over HTTPS (urllib, the ssl
module, OpenSSL's SSL_write_ex/SSL_read_ex) and runs the tool the model picks.

    python3.11 customer_agent.py MODEL_URL CA_FILE MODEL

Commands on stdin, one per line; each is answered with one line on stdout:
    prompt TEXT   -> "ok prompt REPLY"  (Agent.handle_prompt)
    spawn         -> "ok spawn"         (runs /bin/true through subprocess)
    thread URL    -> "ok thread"        (Tools.export_customer_data to URL in a new thread)
    queued TEXT   -> "ok queued REPLY"  (Agent.handle_prompt in a worker thread that takes
                                         prompts from a queue.Queue, as thread pools do;
                                         answered once the worker waits for the next one)
    bench N       -> "ok bench SECONDS" (N model calls, for overhead measurements)
    call URL      -> "ok call ERROR"    (one chat completion request to URL, the model's CA
                                         trusted; ERROR is what failed, "" when nothing did)
    noop          -> "ok noop"
"""

import json
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

TOOLS = [{"type": "function", "function": {"name": "customer-data-export", "parameters": {"type": "object"}}}]


class Tools:
    def export_customer_data(self, query, destination):
        with open("/etc/hostname") as f:
            host_name = f.read().strip()
        url = urllib.parse.urlsplit(destination)
        with socket.create_connection((url.hostname, url.port), timeout=5) as s:
            s.sendall(("EXPORT %s from %s\n" % (query, host_name)).encode())
        return "exported 50 customers"


class Agent:
    def __init__(self, model_url, ca_file, model):
        self.model_url = model_url
        self.model = model
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.tools = Tools()

    def call_model(self, messages):
        body = json.dumps({"model": self.model, "messages": messages, "tools": TOOLS}).encode()
        req = urllib.request.Request(self.model_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
            return json.load(resp)

    def handle_prompt(self, prompt):
        messages = [{"role": "system", "content": "You are the bank's assistant."},
                    {"role": "user", "content": prompt}]
        reply = self.call_model(messages)
        msg = reply["choices"][0]["message"]
        calls = msg.get("tool_calls") or []
        if not calls:
            return msg.get("content") or ""
        messages.append(msg)
        for call in calls:
            args = json.loads(call["function"]["arguments"])
            result = self.tools.export_customer_data(args["query"], args["destination"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        return self.call_model(messages)["choices"][0]["message"]["content"]


def main():
    agent = Agent(sys.argv[1], sys.argv[2], sys.argv[3])
    jobs, results = queue.Queue(), queue.Queue()
    worker_tid = queue.Queue()

    def worker():
        worker_tid.put(threading.get_native_id())
        while True:
            results.put(agent.handle_prompt(jobs.get()))

    threading.Thread(target=worker, name="worker", daemon=True).start()
    worker_syscall = "/proc/self/task/%d/syscall" % worker_tid.get()

    def worker_waits():
        # The next job is sent only once the worker is blocked in queue.get, not while it is
        # still between the two (it would find the job waiting): in a futex (202) wait on a
        # Python lock (FUTEX_WAIT_BITSET) without a timeout, not in the GIL's timed wait.
        while True:
            with open(worker_syscall) as f:
                call = f.read().split()
            if call[0] == "202" and int(call[2], 16) & 127 == 9 and int(call[4], 16) == 0:
                return
            time.sleep(0.001)

    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "prompt":
            reply = agent.handle_prompt(arg)
            print("ok prompt " + reply.replace("\n", " "), flush=True)
        elif cmd == "spawn":
            subprocess.run(["/bin/true"], check=True)
            print("ok spawn", flush=True)
        elif cmd == "thread":
            worker = threading.Thread(target=agent.tools.export_customer_data, args=("SELECT 1", arg), name="exporter")
            worker.start()
            worker.join()
            print("ok thread", flush=True)
        elif cmd == "queued":
            jobs.put(arg)
            reply = results.get()
            worker_waits()
            print("ok queued " + reply.replace("\n", " "), flush=True)
        elif cmd == "call":
            error = ""
            try:
                saved, agent.model_url = agent.model_url, arg
                agent.call_model([{"role": "user", "content": "hello"}])
            except Exception as e:  # the server hung up: that is the point of the command
                error = type(e).__name__
            finally:
                agent.model_url = saved
            print("ok call " + error, flush=True)
        elif cmd == "bench":
            start = time.perf_counter()
            for _ in range(int(arg)):
                agent.call_model([{"role": "user", "content": "hello"}])
            print("ok bench %.6f" % (time.perf_counter() - start), flush=True)
        elif cmd == "noop":
            print("ok noop", flush=True)


if __name__ == "__main__":
    main()
