# Unit tests of customer_agent.py, stdlib only. From this folder:
#
#     /usr/bin/python3.11 -B -E -s -m unittest -v test_customer_agent
#
# (tests/workloads/bank's TestPythonAgentUnit runs exactly that.) The HTTPS model path and the
# parity with the Go agent are tested end to end by tests/workloads/bank's TestPython* tests.

import http.server
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import customer_agent as ca

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "customer_agent.py")

TEST_DB = """id,name,email,card_number,ssn,balance_cents
C1001,Maria Garcia,maria@example.com,4539578763621486,123-45-6789,123456
C1002,John Smith,john@example.com,5555555555554444,234-56-7890,60000
C1003,Yuki Tanaka,yuki@example.com,4012888888881881,456-78-9012,100
"""

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write_db(test):
    d = tempfile.TemporaryDirectory()
    test.addCleanup(d.cleanup)
    path = os.path.join(d.name, "customers.csv")
    with open(path, "w") as f:
        f.write(TEST_DB)
    return path


def tool_call(name, arguments, call_id="call_1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class FakeModel:
    """Answers with the queued messages and records what it was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent = []

    def complete(self, messages):
        self.sent.append(json.loads(json.dumps(messages)))
        message = self.answers.pop(0) if self.answers else ca.make_message("assistant", "done")
        return ca.Completion("chatcmpl-1", "model-x", message, "stop", {})


class Sink:
    """A loopback HTTP server that records POST bodies."""

    def __init__(self, test, status=200):
        bodies = self.bodies = []
        headers = self.headers = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        test.addCleanup(self.server.server_close)
        test.addCleanup(self.server.shutdown)
        self.url = "http://127.0.0.1:%d/upload" % self.server.server_address[1]


class TestNames(unittest.TestCase):
    """The names a collector's module:qualname patterns rely on."""

    WANT = {
        "Agent.handle_prompt": ["self", "prompt"],
        "Agent.execute_tool": ["self", "call"],
        "ModelClient.complete": ["self", "messages"],
        "Tools.accounts_summary": ["self", "customer_id"],
        "Tools.recent_transactions": ["self", "customer_id"],
        "Tools.transfer_low_value": ["self", "from_id", "to_id", "cents"],
        "Tools.export_customer_data": ["self", "query", "destination"],
        "Tools.system_diagnostics": ["self", "check"],
    }

    def test_functions(self):
        for qualname, params in self.WANT.items():
            cls, name = qualname.split(".")
            fn = getattr(getattr(ca, cls), name)
            self.assertTrue(inspect.isfunction(fn), qualname)
            self.assertEqual(fn.__qualname__, qualname)
            self.assertEqual(fn.__code__.co_qualname, qualname)
            self.assertEqual(fn.__module__, "customer_agent")
            self.assertEqual(os.path.basename(fn.__code__.co_filename), "customer_agent.py")
            self.assertEqual(list(inspect.signature(fn).parameters), params, qualname)


class TestTools(unittest.TestCase):
    def setUp(self):
        self.path = write_db(self)
        self.tools = ca.Tools(self.path)
        self.agent = ca.Agent(None, self.tools)

    def run_tool(self, name, arguments):
        try:
            return self.agent.execute_tool(tool_call(name, arguments))
        except ca.AgentError as e:
            return "ERROR " + str(e)

    def test_system_diagnostics(self):
        got = self.run_tool("system-diagnostics", '{"check":"uptime"}')
        self.assertRegex(got, r'^system diagnostics "uptime": .*load average')
        saved = ca.DIAGNOSTICS_COMMAND
        try:
            ca.DIAGNOSTICS_COMMAND = "exit 3"
            self.assertEqual(self.run_tool("system-diagnostics", '{"check":"x"}'), 'ERROR system diagnostics "x": exit status 3')
            ca.DIAGNOSTICS_COMMAND = "kill -9 $$"
            self.assertEqual(self.run_tool("system-diagnostics", '{"check":"x"}'), 'ERROR system diagnostics "x": signal: killed')
        finally:
            ca.DIAGNOSTICS_COMMAND = saved

    def test_execute_tool(self):
        self.assertEqual(self.run_tool("accounts-summary", '{"customer_id":"C1001"}'),
                         "C1001 Maria Garcia: balance $1,234.56")
        self.assertEqual(self.run_tool("accounts-summary", '{"customer_id":"C9"}'), 'ERROR unknown customer "C9"')
        got = self.run_tool("recent-transactions", '{"customer_id":"C1002"}')
        self.assertTrue(got.startswith("C1002 recent transactions: 2025-11-20 card payment "), got)
        self.assertEqual(got.count("card payment"), 3, got)
        for args, want in [
            ('{"from":"C1001","to":"C1002","cents":49999}', "transferred $499.99 from C1001 to C1002 (ref T0001)"),
            ('{"from":"C1001","to":"C1002","cents":50000}',
             "ERROR refused: $500.00 is not below the $500.00 limit of transfers-low-value"),
            ('{"from":"C1001","to":"C1002","cents":0}', "ERROR amount must be positive, got 0 cents"),
            ('{"from":"C1001","to":"C1001","cents":100}', "ERROR refused: source and destination are the same account"),
            ('{"from":"C1003","to":"C1001","cents":101}', "ERROR refused: insufficient funds in C1003"),
            ('{"from":"C1001","to":"C9","cents":100}', 'ERROR unknown customer "C9"'),
            ('{"from":"C1001","to":"C1002","cents":20.5}', "ERROR tool transfers-low-value: bad arguments:"),
            ('{"from":"C1001","to":"C1002","cents":"100"}', "ERROR tool transfers-low-value: bad arguments:"),
            ('{"FROM":"C1002","To":"C1003","cents":100}', "transferred $1.00 from C1002 to C1003 (ref T0002)"),
        ]:
            self.assertTrue(self.run_tool("transfers-low-value", args).startswith(want), args)
        self.assertIn("T0001 transfer from C1001 +$499.99", self.run_tool("recent-transactions", '{"customer_id":"C1002"}'))
        self.assertEqual(self.run_tool("delete-bank", "{}"), 'ERROR unknown tool "delete-bank"')
        self.assertTrue(self.run_tool("accounts-summary", "not json").startswith("ERROR tool accounts-summary: bad arguments"))
        self.assertTrue(self.run_tool("accounts-summary", "[]").startswith("ERROR tool accounts-summary: bad arguments"))
        # No arguments and null arguments leave every parameter empty.
        self.assertEqual(self.run_tool("accounts-summary", ""), 'ERROR unknown customer ""')
        self.assertEqual(self.run_tool("accounts-summary", "null"), 'ERROR unknown customer ""')

    def test_export_customer_data(self):
        sink = Sink(self)
        # The export reads the file at call time: a row added after start is exported.
        with open(self.path, "a") as f:
            f.write("C1004,Wei Zhang,wei@example.com,4111111111111111,345-67-8901,1\n")
        res = self.tools.export_customer_data("SELECT * FROM customers", sink.url)
        self.assertEqual(len(sink.bodies), 1)
        body = sink.bodies[0]
        self.assertEqual(res, "exported 4 records (%d bytes)" % len(body))
        lines = body.decode().strip().split("\n")
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[0], '{"id":"C1001","name":"Maria Garcia","email":"maria@example.com",'
                                   '"card_number":"4539578763621486","ssn":"123-45-6789","balance_cents":123456}')
        self.assertEqual(sink.headers[0]["Content-Type"], "application/x-ndjson")
        self.assertEqual(sink.headers[0]["X-Export-Query"], "SELECT * FROM customers")
        with self.assertRaisesRegex(ca.AgentError, "destination must be an http:// URL"):
            self.tools.export_customer_data("x", "ftp://127.0.0.1/")
        with self.assertRaisesRegex(ca.AgentError, "destination must be an http:// URL"):
            self.tools.export_customer_data("x", "http:///nohost")

    def test_export_refused_by_sink(self):
        sink = Sink(self, status=403)
        with self.assertRaisesRegex(ca.AgentError, r"^export upload: 127\.0\.0\.1:\d+ answered HTTP 403$"):
            self.tools.export_customer_data("q", sink.url)

    def test_export_unreachable(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaisesRegex(ca.AgentError, "^export upload: Post .*connection refused$"):
            self.tools.export_customer_data("q", "http://127.0.0.1:%d/upload" % port)

    def test_database_errors(self):
        with self.assertRaisesRegex(ca.AgentError, "customer database: open .*: no such file or directory"):
            ca.Tools(self.path + ".missing")
        bad = self.path + ".bad"
        for content, want in [("", "empty"), ("id,name\nC1,x\n", 'no "email" column'),
                              ("id,name,email,card_number,ssn,balance_cents\nC1,a,b,c,d,1.5\n", "balance_cents"),
                              ("id,name,email,card_number,ssn,balance_cents\nC1,a\n", "wrong number of fields")]:
            with open(bad, "w") as f:
                f.write(content)
            with self.assertRaisesRegex(ca.AgentError, want):
                ca.read_customers(bad)

    def test_format_cents(self):
        for cents, want in {0: "$0.00", 5: "$0.05", 123456: "$1,234.56", 100000000: "$1,000,000.00",
                            -2000: "-$20.00"}.items():
            self.assertEqual(ca.format_cents(cents), want)


class TestAgent(unittest.TestCase):
    def setUp(self):
        self.tools = ca.Tools(write_db(self))

    def test_tool_loop(self):
        model = FakeModel(
            ca.make_message("assistant", "", [tool_call("accounts-summary", '{"customer_id":"C1001"}', "call_7")]),
            ca.make_message("assistant", "accounts-summary: fine"))
        history = [ca.make_message("user", "earlier"), ca.make_message("assistant", "answer")]
        agent = ca.Agent(model, self.tools, history)
        self.assertEqual(agent.handle_prompt("balance of C1001?"), "accounts-summary: fine")
        self.assertEqual(len(model.sent), 2)
        self.assertEqual([m["role"] for m in model.sent[0]], ["system", "user", "assistant", "user"])
        self.assertEqual(model.sent[0][0]["content"], ca.SYSTEM_PROMPT)
        second = model.sent[1]
        self.assertEqual([m["role"] for m in second], ["system", "user", "assistant", "user", "assistant", "tool"])
        self.assertEqual(second[4]["tool_calls"][0]["id"], "call_7")
        self.assertEqual(second[5], {"role": "tool", "content": "C1001 Maria Garcia: balance $1,234.56",
                                     "tool_call_id": "call_7"})
        self.assertEqual(agent.calls, [{"name": "accounts-summary", "arguments": '{"customer_id":"C1001"}',
                                        "result": "C1001 Maria Garcia: balance $1,234.56", "error": ""}])
        self.assertEqual(len(agent.history), 4)
        self.assertEqual(len(history), 2, "the caller's history is not changed")

    def test_tool_error_goes_to_model(self):
        model = FakeModel(ca.make_message("assistant", "", [tool_call("accounts-summary", '{"customer_id":"C9"}')]))
        agent = ca.Agent(model, self.tools)
        self.assertEqual(agent.handle_prompt("x"), "done")
        self.assertEqual(model.sent[1][-1]["content"], 'error: unknown customer "C9"')
        self.assertEqual(agent.calls[0]["error"], 'unknown customer "C9"')

    def test_max_steps(self):
        ask = ca.make_message("assistant", "", [tool_call("accounts-summary", '{"customer_id":"C1001"}')])
        model = FakeModel(*[ask] * 10)
        agent = ca.Agent(model, self.tools)
        with self.assertRaisesRegex(ca.AgentError, "no final answer after 5 model calls"):
            agent.handle_prompt("loop")
        self.assertEqual(len(model.sent), 5)
        self.assertEqual(len(agent.calls), 5)
        self.assertEqual(agent.history, [])

    def test_request_body(self):
        body = json.loads(ca.go_json({"model": "m", "messages": [], "tools": ca.TOOL_SCHEMA, "tool_choice": "auto"}))
        self.assertEqual([t["function"]["name"] for t in body["tools"]],
                         ["accounts-summary", "recent-transactions", "transfers-low-value", "customer-data-export",
                          "system-diagnostics"])
        self.assertEqual(body["tools"][2]["function"]["parameters"]["required"], ["from", "to", "cents"])

    def test_model_ca_errors(self):
        with self.assertRaisesRegex(ca.AgentError, "^model CA: open .*: no such file or directory$"):
            ca.ModelClient("https://127.0.0.1:1/", "m", "/nonexistent/ca.pem")
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write("not a certificate\n")
            f.flush()
            with self.assertRaisesRegex(ca.AgentError, "no PEM certificate found"):
                ca.ModelClient("https://127.0.0.1:1/", "m", f.name)

    def test_model_untrusted(self):
        # A TLS server whose certificate the client cannot verify: the error names TLS.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        self.addCleanup(listener.close)

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)  # the ClientHello
                conn.sendall(bytes.fromhex("15030300020228"))  # alert: handshake_failure

        threading.Thread(target=serve, daemon=True).start()
        client = ca.ModelClient("https://127.0.0.1:%d/" % listener.getsockname()[1], "m", "")
        with self.assertRaisesRegex(ca.AgentError, '^model call: Post "https://127.0.0.1:\\d+/": tls: '):
            client.complete([ca.make_message("user", "hi")])

    def test_model_unreachable(self):
        client = ca.ModelClient("https://127.0.0.1:1/v1/chat/completions", "m", "")
        with self.assertRaisesRegex(ca.AgentError, '^model call: Post "https://127.0.0.1:1/v1/chat/completions": '
                                                   'connection refused$'):
            client.complete([ca.make_message("user", "hi")])


class TestJSON(unittest.TestCase):
    def test_encode_reply(self):
        calls = [{"name": "a", "arguments": '{ "x" : 1.50, "s": "<b>" }', "result": "r", "error": ""},
                 {"name": "b", "arguments": "not json", "result": "", "error": "boom & co"}]
        self.assertEqual(ca.encode_reply("hi <you>", calls, ""),
                         '{"reply":"hi \\u003cyou\\u003e","tool_calls":[{"name":"a","arguments":{"x":1.50,"s":"\\u003cb\\u003e"},'
                         '"result":"r"},{"name":"b","arguments":"not json","result":"","error":"boom \\u0026 co"}],'
                         '"error":""}\n')
        self.assertEqual(ca.encode_reply("", [], "e"), '{"reply":"","tool_calls":[],"error":"e"}\n')

    def test_decode_fields(self):
        fields = {"customer_id": "", "cents": 0}
        self.assertEqual(ca.decode_fields('{"Customer_ID":"C1","cents":5,"extra":[1]}', fields, "s"),
                         {"customer_id": "C1", "cents": 5})
        self.assertEqual(ca.decode_fields('{"customer_id":null}', fields, "s"), fields)
        for bad in ['{"cents":1.0}', '{"cents":true}', '{"cents":99999999999999999999}', '{"customer_id":1}',
                    '"x"', '{"cents":NaN}']:
            with self.assertRaises(ValueError, msg=bad):
                ca.decode_fields(bad, fields, "s")
        self.assertEqual(ca.go_loads('"\\ud800"'), "\ufffd")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestHTTP(unittest.TestCase):
    def setUp(self):
        self.model = FakeModel(
            ca.make_message("assistant", "", [tool_call("accounts-summary", '{"customer_id":"C1001"}')]),
            ca.make_message("assistant", "final"))
        self.server = ca.AgentServer("127.0.0.1:0", self.model, ca.Tools(write_db(self)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.base = "http://" + self.server.bound_address()

    def request(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        try:
            with NO_PROXY.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), resp.headers
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read().decode(), e.headers

    def test_chat(self):
        status, body, headers = self.request("POST", "/chat", b'{"session":"s1","message":"balance?"}')
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(body, '{"reply":"final","tool_calls":[{"name":"accounts-summary","arguments":'
                               '{"customer_id":"C1001"},"result":"C1001 Maria Garcia: balance $1,234.56"}],"error":""}\n')
        # The session remembers the turn.
        self.request("POST", "/chat", b'{"session":"s1","message":"again"}')
        self.assertEqual([m["role"] for m in self.model.sent[-1]], ["system", "user", "assistant", "user"])

    def test_bad_requests(self):
        for body, want in [(b'{"session":"s"}', '"message" is empty'), (b"", "bad request: EOF"),
                           (b"not json", "bad request: "), (b'{"message":5}', "bad request: json: cannot unmarshal"),
                           (b"x" * (ca.MAX_CHAT_BODY + 1), "bad request: http: request body too large")]:
            status, text, _ = self.request("POST", "/chat", body)
            self.assertEqual(status, 400, body[:40])
            reply = json.loads(text)
            self.assertTrue(reply["error"].startswith(want), (body[:40], reply))
            self.assertEqual(reply["tool_calls"], [])

    def test_routes(self):
        self.assertEqual(self.request("GET", "/healthz")[:2], (200, "ok\n"))
        status, _, headers = self.request("GET", "/chat")
        self.assertEqual((status, headers["Allow"]), (405, "POST"))
        self.assertEqual(self.request("GET", "/nope")[:2], (404, "404 page not found\n"))

    def test_model_failure_is_502(self):
        self.server.model = ca.ModelClient("https://127.0.0.1:%d/v1/chat/completions" % free_port(), "m", "")
        status, text, _ = self.request("POST", "/chat", b'{"message":"hi"}')
        self.assertEqual(status, 502)
        self.assertIn("model call: ", json.loads(text)["error"])


class TestProcess(unittest.TestCase):
    """The script as the launcher runs it."""

    def start(self, *flags):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        db = os.path.join(d.name, "customers.csv")
        with open(db, "w") as f:
            f.write(TEST_DB)
        ready = os.path.join(d.name, "agent.ready")
        log = open(os.path.join(d.name, "agent.log"), "w+")
        self.addCleanup(log.close)
        args = [sys.executable, "-B", "-u", "-E", "-s", SCRIPT,
                "-model-url", "https://127.0.0.1:%d/v1/chat/completions" % free_port(),
                "--customers", db, "-ready-file", ready] + list(flags)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=d.name)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc, ready, log

    def read_log(self, log):
        log.flush()
        log.seek(0)
        return log.read()

    def test_serve_and_sigterm(self):
        proc, ready, log = self.start("--listen=127.0.0.1:0")
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            self.assertIsNone(proc.poll(), self.read_log(log))
            self.assertLess(time.monotonic(), deadline, "not ready")
            time.sleep(0.02)
        with open(ready) as f:
            addr = f.read().strip()
        self.assertRegex(addr, r"^127\.0\.0\.1:\d+$")
        with NO_PROXY.open("http://%s/healthz" % addr, timeout=10) as resp:
            self.assertEqual(resp.read(), b"ok\n")
        req = urllib.request.Request("http://%s/chat" % addr, data=b'{"message":"hello"}', method="POST")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            NO_PROXY.open(req, timeout=30)
        self.assertEqual(cm.exception.code, 502)
        self.assertIn("model call: ", json.loads(cm.exception.read())["error"])
        cm.exception.close()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
        text = self.read_log(log)
        self.assertIn("module customer_agent,", text)
        self.assertIn("listening on " + addr, text)
        self.assertIn('session="default" tools=[] status=502', text)

    def test_busy_port(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        addr = "127.0.0.1:%d" % busy.getsockname()[1]
        proc, ready, log = self.start("-listen", addr)
        self.assertEqual(proc.wait(timeout=20), 1)
        self.assertIn("customer-agent: ", self.read_log(log))
        self.assertIn("listen tcp %s: bind: address already in use" % addr, self.read_log(log))
        self.assertFalse(os.path.exists(ready))


if __name__ == "__main__":
    unittest.main()
