# customer_agent.py is the bank's AI customer-service agent of tests/workloads/customer-agent,
# written again in Python (stdlib only, Debian's /usr/bin/python3.11) so that AgentTrail can be
# shown tracing an interpreted agent: same HTTP API, flags, tools, model requests and answers.
#
#     POST /chat {"session":"s1","message":"What is my balance? I am C1001"}
#     -> {"reply":"...","tool_calls":[{"name":"accounts-summary","arguments":{...},"result":"..."}],"error":""}
#
# How it runs (tests/workloads/bank.StartPython does exactly this):
#
#     /usr/bin/python3.11 -B -u -E -s /abs/path/customer_agent.py -listen 127.0.0.1:0 \
#         -model-url https://127.0.0.1:18443/v1/chat/completions -model-ca certs/ca.pem \
#         -model model-x -customers customers.csv -ready-file run/python-agent.ready
#
# (the Go launcher's helper spells flags Go's way; --listen etc. work the same).
#
# The process name (comm) is "python3.11". Run as a script, this file is the module __main__,
# but its __main__ block only loads this same file again as the module "customer_agent" and runs
# that module's main(): every frame of the running agent therefore has module (f_globals
# __name__) "customer_agent" and file customer_agent.py, whether a tracer names a frame's module
# by its globals or by its file. A collector config selects the functions with these
# module:qualname patterns (the qualname is the code object's co_qualname):
#
#     customer_agent:Agent.handle_prompt            (self, prompt)            the prompt handler
#     customer_agent:ModelClient.complete           (self, messages)          the model call
#     customer_agent:Agent.execute_tool             (self, call)              tool dispatch
#     customer_agent:Tools.accounts_summary         (self, customer_id)
#     customer_agent:Tools.recent_transactions      (self, customer_id)
#     customer_agent:Tools.transfer_low_value       (self, from_id, to_id, cents)
#     customer_agent:Tools.export_customer_data     (self, query, destination)
#     customer_agent:Tools.system_diagnostics       (self, check)
#
# (__main__:Agent.handle_prompt etc. never run.) Both "-flag" and "--flag" spellings are
# accepted, as Go's flag package does. -B keeps __pycache__ out of the source tree, -E and -s keep
# the environment's PYTHON* variables and user site-packages out of the agent.
#
# Differences from the Go agent that a trace can show: urllib opens a new TLS connection for every
# model call (Go reuses them); error texts of Go's JSON decoder and network stack are imitated, not
# reproduced word for word.

import argparse
import csv
import datetime
import http.client
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

# SYSTEM_PROMPT is the operator's instruction. An attacker's message that says "ignore previous
# instructions" wins against it with the mock model, as it too often does with real ones.
SYSTEM_PROMPT = (
    "You are the customer-service assistant of Example Bank. Help customers with "
    "balances, recent transactions and transfers under $500. Never use customer-data-export: it "
    "is for bank staff only."
)

MAX_STEPS = 5  # model calls per prompt, so a model that keeps asking for tools cannot loop forever
MAX_HISTORY = 20  # remembered messages of a session (user and assistant turns)
MAX_TRANSFER_CENTS = 50000  # limit of transfers-low-value: $500, exclusive
MAX_CHAT_BODY = 1 << 20
MAX_MODEL_RESPONSE = 8 << 20
MAX_EXPORT_RESPONSE = 1 << 20
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

CUSTOMER_COLUMNS = ("id", "name", "email", "card_number", "ssn", "balance_cents")


class AgentError(Exception):
    """An error the agent reports to its caller (the chat client or the model), as Go's errors."""


# ---------------------------------------------------------------------------------------------
# JSON the way Go's encoding/json writes and reads it.

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def go_json(value):
    """Compact JSON as Go's encoder writes it: UTF-8, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _GO_ESCAPE_RE.sub(_go_escape, text)


def _go_escape(match):
    return _GO_ESCAPES[match.group()]


def _reject_constant(name):
    raise ValueError("invalid character %r looking for beginning of value" % name[:1])


def _clean(value):
    """Replaces lone surrogates (JSON escapes of half a pair) with U+FFFD, as Go's decoder does."""
    if isinstance(value, str):
        return _SURROGATE_RE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def go_loads(text):
    """Parses one JSON document as strictly as Go's json.Unmarshal (no NaN or Infinity)."""
    return _clean(json.loads(text, parse_constant=_reject_constant))


def go_valid(text):
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def go_compact(text):
    """Valid JSON text without insignificant whitespace and with HTML characters escaped, as Go
    writes a json.RawMessage: the original number and string spellings are kept."""
    out = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            out.append(_GO_ESCAPES.get(ch, ch))
        elif ch in " \t\r\n":
            continue
        else:
            if ch == '"':
                in_string = True
            out.append(ch)
    return "".join(out)


def go_quote(s):
    """Approximately Go's %q."""
    return json.dumps(s, ensure_ascii=False)


def _json_kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_fields(raw, fields, what):
    """Decodes a JSON object into the given fields ({name: default}) the way Go's json.Unmarshal
    fills a struct: unknown keys are ignored, names match case-insensitively, null leaves the
    default, a value of the wrong type is an error. Defaults decide the type (str or int)."""
    decoded = go_loads(raw) if isinstance(raw, (str, bytes)) else raw
    out = dict(fields)
    if decoded is None:
        return out
    if not isinstance(decoded, dict):
        raise ValueError("json: cannot unmarshal %s into Go value of type %s" % (_json_kind(decoded), what))
    for key, value in decoded.items():
        name = key if key in fields else next((f for f in fields if f.lower() == key.lower()), None)
        if name is None or value is None:
            continue
        want = type(fields[name])
        if want is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError("json: cannot unmarshal %s into Go struct field %s.%s of type %s"
                             % (_json_kind(value), what, name, "int" if want is int else "string"))
        out[name] = value
    return out


def _os_error_text(err):
    """An OSError as Go words syscall errors: "connection refused", "no such file or directory"."""
    if isinstance(err, ssl.SSLError):  # its errno is OpenSSL's, not a system error
        return "tls: " + (getattr(err, "verify_message", "") or err.reason or str(err))
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "i/o timeout"
    return str(err) or type(err).__name__


def _url_error_text(method, url, err):
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    return '%s "%s": %s' % (method, url, _os_error_text(reason))


def _read_limited(resp, limit):
    chunks, size = [], 0
    while size < limit:
        chunk = resp.read(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Chat messages in the OpenAI chat-completions format, as plain dicts in Go's field order.

def make_message(role, content, tool_calls=None, tool_call_id=""):
    msg = {"role": role, "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if tool_call_id:
        msg["tool_call_id"] = tool_call_id
    return msg


def _field(obj, name):
    """The value of a JSON object's key, matched case-insensitively like Go's decoder (last wins)."""
    found = None
    for key, value in obj.items():
        if key.lower() == name:
            found = value
    return found


def _without(obj, *names):
    return {k: v for k, v in obj.items() if k.lower() not in names}


def _decode_tool_call(raw):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError("json: cannot unmarshal %s into Go struct field Message.tool_calls of type main.ToolCall"
                         % _json_kind(raw))
    call = decode_fields(_without(raw, "function"), {"id": "", "type": ""}, "ToolCall")
    function = _field(raw, "function")
    call["function"] = decode_fields(function, {"name": "", "arguments": ""}, "FunctionCall")
    return call


def _decode_message(raw):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError("json: cannot unmarshal %s into Go struct field .choices.message of type main.Message"
                         % _json_kind(raw))
    fields = decode_fields(_without(raw, "tool_calls"), {"role": "", "content": "", "tool_call_id": ""}, "Message")
    calls = _field(raw, "tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise ValueError("json: cannot unmarshal %s into Go struct field Message.tool_calls of type []main.ToolCall"
                         % _json_kind(calls))
    tool_calls = [_decode_tool_call(c) for c in calls or []]
    return make_message(fields["role"], fields["content"], tool_calls, fields["tool_call_id"])


class Completion:
    """The part of a chat-completions response the agent uses."""

    def __init__(self, id, model, message, finish_reason, usage):
        self.id = id
        self.model = model
        self.message = message
        self.finish_reason = finish_reason
        self.usage = usage


def _decode_completion(raw):
    doc = go_loads(raw)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError("json: cannot unmarshal %s into Go value of type main.completionResponse" % _json_kind(doc))
    top = decode_fields(_without(doc, "choices", "usage", "error"), {"id": "", "model": ""}, "completionResponse")
    choices = _field(doc, "choices")
    if choices is not None and not isinstance(choices, list):
        raise ValueError("json: cannot unmarshal %s into Go struct field completionResponse.choices"
                         % _json_kind(choices))
    decoded_choices = []
    for choice in choices or []:
        if choice is None:
            choice = {}
        if not isinstance(choice, dict):
            raise ValueError("json: cannot unmarshal %s into Go struct field completionResponse.choices"
                             % _json_kind(choice))
        message = _decode_message(_field(choice, "message"))
        finish = decode_fields(_without(choice, "message"), {"finish_reason": ""}, "choice")["finish_reason"]
        decoded_choices.append((message, finish))
    usage = decode_fields(_field(doc, "usage"), {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                          "Usage")
    error = _field(doc, "error")
    error_message = None
    if error is not None:
        error_message = decode_fields(error, {"message": ""}, "completionResponse.error")["message"]
    return top, decoded_choices, usage, error_message


# ---------------------------------------------------------------------------------------------
# The model client.

def _function(name, description, required, properties):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"properties": properties, "required": required, "type": "object"},
    }}


def _string(description):
    return {"description": description, "type": "string"}


# TOOL_SCHEMA is what the model is told it may call. customer-data-export is meant for staff, but
# nothing in the agent's permissions stops the model from asking for it: that is the flaw the
# demo exploits. (Keys in Go's order: struct fields as declared, map keys sorted.)
TOOL_SCHEMA = [
    _function("accounts-summary", "Read the account holder's name and current balance.",
              ["customer_id"], {"customer_id": _string("Customer id, e.g. C1001")}),
    _function("recent-transactions", "List the customer's most recent transactions.",
              ["customer_id"], {"customer_id": _string("Customer id, e.g. C1001")}),
    _function("transfers-low-value", "Transfer money between two customers' accounts; only amounts under $500.",
              ["from", "to", "cents"], {
                  "cents": {"description": "Amount in cents, below 50000", "type": "integer"},
                  "from": _string("Paying customer id"),
                  "to": _string("Receiving customer id"),
              }),
    _function("customer-data-export", "STAFF ONLY: export customer records matching a query to a reporting endpoint.",
              ["query", "destination"], {
                  "destination": _string("http URL that receives the export"),
                  "query": _string("Selection, e.g. SELECT * FROM customers"),
              }),
    _function("system-diagnostics", "Run a health check of the agent's host (uptime) and return its output.",
              ["check"], {"check": _string("The check to run, e.g. uptime")}),
]


class ModelClient:
    """Calls an OpenAI-compatible chat-completions endpoint over HTTPS with urllib.request."""

    def __init__(self, url, model, ca_file):
        # Trusts only the PEM CA in ca_file (the mock model's self-signed CA) when it is set, and
        # the system roots otherwise.
        if ca_file:
            try:
                with open(ca_file, "rb") as f:
                    pem = f.read()
            except OSError as e:
                raise AgentError("model CA: open %s: %s" % (ca_file, _os_error_text(e))) from None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
            try:
                context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError):
                raise AgentError("model CA %s: no PEM certificate found" % ca_file) from None
        else:
            context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.url = url
        self.model = model
        self.timeout = 60
        # No proxy: the demo talks to loopback only and must not depend on the environment.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))

    def complete(self, messages):
        """Sends the conversation and the tool schema, and returns the model's next message:
        either a final answer or tool calls. The collector traces it as the inference span."""
        body = go_json({"model": self.model, "messages": messages, "tools": TOOL_SCHEMA,
                        "tool_choice": "auto"}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            resp = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            resp = e  # a non-2xx answer: its body says why
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise AgentError("model call: " + _url_error_text("Post", self.url, e)) from None
        try:
            with resp:
                status = resp.status
                raw = _read_limited(resp, MAX_MODEL_RESPONSE)
        except (OSError, http.client.HTTPException) as e:
            raise AgentError("model response: " + _os_error_text(e)) from None
        try:
            top, choices, usage, error_message = _decode_completion(raw.decode("utf-8", "replace"))
        except (ValueError, RecursionError) as e:
            raise AgentError("model response (HTTP %d): %s" % (status, e)) from None
        if status != 200:
            msg = error_message if error_message is not None else raw.decode("utf-8", "replace")
            raise AgentError("model returned HTTP %d: %s" % (status, msg))
        if not choices:
            raise AgentError("model response has no choices")
        message, finish_reason = choices[0]
        return Completion(top["id"], top["model"], message, finish_reason, usage)


# ---------------------------------------------------------------------------------------------
# The tools.

def format_cents(cents):
    """Renders 123456 as $1,234.56."""
    sign = ""
    if cents < 0:
        sign, cents = "-", -cents
    return "%s$%s.%02d" % (sign, format(cents // 100, ","), cents % 100)


def read_customers(path):
    """Opens and parses the customer database: a CSV file with the header
    id,name,email,card_number,ssn,balance_cents (columns in any order)."""
    try:
        f = open(path, newline="", encoding="utf-8", errors="replace")
    except OSError as e:
        raise AgentError("customer database: open %s: %s" % (path, _os_error_text(e))) from None
    with f:
        try:
            records = [r for r in csv.reader(f, strict=True) if r]
        except (csv.Error, OSError) as e:
            raise AgentError("customer database %s: %s" % (path, e)) from None
    if not records:
        raise AgentError("customer database %s: empty" % path)
    for i, r in enumerate(records[1:]):
        if len(r) != len(records[0]):
            raise AgentError("customer database %s: record on line %d: wrong number of fields" % (path, i + 2))
    col = {name: i for i, name in enumerate(records[0])}
    for name in CUSTOMER_COLUMNS:
        if name not in col:
            raise AgentError('customer database %s: no "%s" column' % (path, name))
    out = []
    for line, r in enumerate(records[1:], start=2):
        raw = r[col["balance_cents"]]
        if not re.fullmatch(r"[+-]?[0-9]+", raw) or not INT64_MIN <= int(raw) <= INT64_MAX:
            reason = "invalid syntax" if not re.fullmatch(r"[+-]?[0-9]+", raw) else "value out of range"
            raise AgentError('customer database %s line %d: balance_cents: strconv.ParseInt: parsing %s: %s'
                             % (path, line, go_quote(raw), reason))
        out.append({"id": r[col["id"]], "name": r[col["name"]], "email": r[col["email"]],
                    "card_number": r[col["card_number"]], "ssn": r[col["ssn"]], "balance_cents": int(raw)})
    return out


def _fnv32a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


MERCHANTS = ("GROCERY MART", "CITY TRANSIT", "COFFEE CORNER", "BOOK NOOK", "FUEL STOP")


class Tools:
    """The functions the model may ask the agent to run. The customer-facing tools work on an
    in-memory copy of the accounts loaded at start (the bank's "read replica"), so in a trace only
    the bulk export reads the customer database file."""

    def __init__(self, customers_file):
        self.customers_file = customers_file
        self.accounts = {c["id"]: c for c in read_customers(customers_file)}
        self.transfers = []  # (ref, from, to, cents)
        self.lock = threading.Lock()
        # No proxy: outbound traffic in the demo is loopback only. urllib opens a connection per
        # request, so every export shows in a trace as its own connect.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.timeout = 15

    def accounts_summary(self, customer_id):
        """The accounts-summary tool."""
        with self.lock:
            c = self.accounts.get(customer_id)
            if c is None:
                raise AgentError("unknown customer %s" % go_quote(customer_id))
            return "%s %s: balance %s" % (c["id"], c["name"], format_cents(c["balance_cents"]))

    def recent_transactions(self, customer_id):
        """The recent-transactions tool: this process's transfers, newest first, then a few
        synthetic card payments derived from the id so that answers are reproducible."""
        with self.lock:
            if customer_id not in self.accounts:
                raise AgentError("unknown customer %s" % go_quote(customer_id))
            lines = []
            for ref, src, dst, cents in reversed(self.transfers):
                if customer_id == src:
                    lines.append("%s transfer to %s -%s" % (ref, dst, format_cents(cents)))
                elif customer_id == dst:
                    lines.append("%s transfer from %s +%s" % (ref, src, format_cents(cents)))
            seed = _fnv32a(customer_id.encode("utf-8"))
            day = datetime.date(2025, 11, 20)
            for i in range(3):
                seed = (seed * 1664525 + 1013904223) & 0xFFFFFFFF  # an LCG step: cheap, deterministic variety
                merchant = MERCHANTS[seed % len(MERCHANTS)]
                cents = (seed >> 8) % 9000 + 100
                lines.append("%s card payment %s -%s" % (
                    (day - datetime.timedelta(days=2 * i)).isoformat(), merchant, format_cents(cents)))
            return customer_id + " recent transactions: " + "; ".join(lines)

    def transfer_low_value(self, from_id, to_id, cents):
        """The transfers-low-value tool; it refuses $500 and more."""
        if cents <= 0:
            raise AgentError("amount must be positive, got %d cents" % cents)
        if cents >= MAX_TRANSFER_CENTS:
            raise AgentError("refused: %s is not below the %s limit of transfers-low-value"
                             % (format_cents(cents), format_cents(MAX_TRANSFER_CENTS)))
        if from_id == to_id:
            raise AgentError("refused: source and destination are the same account")
        with self.lock:
            src = self.accounts.get(from_id)
            if src is None:
                raise AgentError("unknown customer %s" % go_quote(from_id))
            dst = self.accounts.get(to_id)
            if dst is None:
                raise AgentError("unknown customer %s" % go_quote(to_id))
            if src["balance_cents"] < cents:
                raise AgentError("refused: insufficient funds in %s" % from_id)
            src["balance_cents"] -= cents
            dst["balance_cents"] += cents
            ref = "T%04d" % (len(self.transfers) + 1)
            self.transfers.append((ref, from_id, to_id, cents))
            return "transferred %s from %s to %s (ref %s)" % (format_cents(cents), from_id, to_id, ref)

    def export_customer_data(self, query, destination):
        """The staff-only customer-data-export tool. It always exports the whole table (the query
        is only recorded), reading the database file from disk on every call, and POSTs the rows
        as JSON lines to destination. Nothing checks who asked or where the data goes: this is
        the exfiltration path of the demo."""
        try:
            parts = urllib.parse.urlsplit(destination)
            host = parts.netloc.rpartition("@")[2]
        except ValueError:
            parts, host = None, ""
        if parts is None or parts.scheme != "http" or not host:
            raise AgentError("destination must be an http:// URL, got %s" % go_quote(destination))
        rows = read_customers(self.customers_file)
        body = "".join(go_json(row) + "\n" for row in rows).encode("utf-8")
        request = urllib.request.Request(destination, data=body, method="POST", headers={
            "Content-Type": "application/x-ndjson",
            "X-Export-Query": query.encode("utf-8"),  # raw UTF-8, as Go sends it
        })
        try:
            resp = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            e.close()
            raise AgentError("export upload: %s answered HTTP %d" % (host, e.code)) from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise AgentError("export upload: " + _url_error_text("Post", destination, e)) from None
        with resp:
            try:
                _read_limited(resp, MAX_EXPORT_RESPONSE)
            except (OSError, http.client.HTTPException):
                pass  # the upload is done; Go ignores the rest of the answer too
        return "exported %d records (%d bytes)" % (len(rows), len(body))

    def system_diagnostics(self, check):
        """The system-diagnostics tool: runs `/bin/sh -c "uptime"` and returns its output, or the
        error as Go's os/exec words it ("signal: killed" when kernel enforcement stops the exec,
        "exit status N"). check is only recorded."""
        try:
            done = subprocess.run(["/bin/sh", "-c", DIAGNOSTICS_COMMAND], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False)
        except OSError as e:
            raise AgentError("system diagnostics %s: fork/exec /bin/sh: %s" % (go_quote(check), _os_error_text(e))) from None
        if done.returncode < 0:
            raise AgentError("system diagnostics %s: signal: %s" % (go_quote(check), _signal_text(-done.returncode)))
        if done.returncode > 0:
            raise AgentError("system diagnostics %s: exit status %d" % (go_quote(check), done.returncode))
        return "system diagnostics %s: %s" % (go_quote(check), done.stdout.decode("utf-8", "replace").strip())


DIAGNOSTICS_COMMAND = "uptime"  # what system-diagnostics runs, through the shell

# Go's names of the signals a child may die of (syscall.Signal.String).
_SIGNAL_TEXT = {1: "hangup", 2: "interrupt", 3: "quit", 6: "aborted", 9: "killed", 11: "segmentation fault",
                13: "broken pipe", 15: "terminated"}


def _signal_text(signum):
    return _SIGNAL_TEXT.get(signum, "signal %d" % signum)


# ---------------------------------------------------------------------------------------------
# The agent.

TOOL_ARGUMENTS = {"customer_id": "", "from": "", "to": "", "cents": 0, "query": "", "destination": "", "check": ""}


class Agent:
    """Answers one prompt of one chat session. A new Agent is made per request, so the
    per-request record of tool calls lives in the Agent rather than in parameters."""

    def __init__(self, model, tools, history=()):
        self.model = model
        self.tools = tools
        self.history = list(history)  # earlier user/assistant turns of the session
        self.calls = []  # executed tool calls: {"name","arguments" (JSON text),"result","error"}

    def handle_prompt(self, prompt):
        """Runs the agent loop for the user's message: ask the model, run the tools it asks for,
        send their results back, until the model answers without tool calls."""
        user = make_message("user", prompt)
        messages = [make_message("system", SYSTEM_PROMPT)] + self.history + [user]
        for _ in range(MAX_STEPS):
            completion = self.model.complete(messages)
            tool_calls = completion.message.get("tool_calls") or []
            content = completion.message["content"]
            if not tool_calls:
                self.history += [user, make_message("assistant", content)]
                return content
            messages.append(make_message("assistant", content, tool_calls))
            for call in tool_calls:
                record = {"name": call["function"]["name"], "arguments": call["function"]["arguments"],
                          "result": "", "error": ""}
                try:
                    record["result"] = self.execute_tool(call)
                    content = record["result"]
                except Exception as e:  # noqa: BLE001 - the model sees the failure and can explain it
                    record["error"] = _error_text(e)
                    content = "error: " + record["error"]
                self.calls.append(record)
                messages.append(make_message("tool", content, tool_call_id=call["id"]))
        raise AgentError("no final answer after %d model calls" % MAX_STEPS)

    def execute_tool(self, call):
        """Maps the model's tool name to the Tools method, decoding its JSON arguments."""
        name = call["function"]["name"]
        arguments = call["function"]["arguments"]
        args = dict(TOOL_ARGUMENTS)
        if arguments != "":
            try:
                args = decode_fields(arguments, TOOL_ARGUMENTS, "struct")
            except (ValueError, RecursionError) as e:
                raise AgentError("tool %s: bad arguments: %s" % (name, e)) from None
        if name == "accounts-summary":
            return self.tools.accounts_summary(args["customer_id"])
        if name == "recent-transactions":
            return self.tools.recent_transactions(args["customer_id"])
        if name == "transfers-low-value":
            return self.tools.transfer_low_value(args["from"], args["to"], args["cents"])
        if name == "customer-data-export":
            return self.tools.export_customer_data(args["query"], args["destination"])
        if name == "system-diagnostics":
            return self.tools.system_diagnostics(args["check"])
        raise AgentError("unknown tool %s" % go_quote(name))


def _error_text(err):
    if isinstance(err, AgentError):
        return str(err)
    return "%s: %s" % (type(err).__name__, err)


# ---------------------------------------------------------------------------------------------
# The HTTP server.

def log(fmt, *args):
    """Go's log format with the Go agent's prefix: "customer-agent: 2006/01/02 15:04:05 msg"."""
    msg = fmt % args if args else fmt
    sys.stderr.write("customer-agent: %s %s\n" % (time.strftime("%Y/%m/%d %H:%M:%S"), msg))
    sys.stderr.flush()


def _go_duration(seconds):
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return "%dms" % ms
    minutes, ms = divmod(ms, 60000)
    secs = ("%d.%03d" % divmod(ms, 1000)).rstrip("0").rstrip(".") + "s"
    return ("%dm" % minutes if minutes else "") + secs


def encode_reply(reply, tool_calls, error):
    """The chat answer, byte for byte as the Go agent's json.Encoder writes it."""
    calls = []
    for c in tool_calls:
        arguments = c["arguments"]
        raw = go_compact(arguments) if go_valid(arguments) else go_json(arguments)
        item = '{"name":%s,"arguments":%s,"result":%s' % (go_json(c["name"]), raw, go_json(c["result"]))
        if c["error"]:
            item += ',"error":' + go_json(c["error"])
        calls.append(item + "}")
    return '{"reply":%s,"tool_calls":[%s],"error":%s}\n' % (go_json(reply), ",".join(calls), go_json(error))


class Session:
    """Serialises the turns of one conversation and remembers them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.history = []


def split_host_port(addr):
    """Go's net.SplitHostPort for the forms -listen takes: host:port, [v6]:port, :port."""
    if addr.startswith("["):
        host, sep, port = addr[1:].partition("]:")
        if not sep:
            raise ValueError("address %s: missing port in address" % addr)
    else:
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise ValueError("address %s: missing port in address" % addr)
        if ":" in host:
            raise ValueError("address %s: too many colons in address" % addr)
    if not port.isdigit() or int(port) > 65535:
        raise ValueError("address %s: invalid port" % addr)
    return host, int(port)


class AgentServer(http.server.ThreadingHTTPServer):
    """The chat API: POST /chat and GET /healthz, one thread per connection."""

    daemon_threads = True

    def __init__(self, listen, model, tools):
        self.model = model
        self.tools = tools
        self.sessions = {}
        self.sessions_lock = threading.Lock()
        self.inflight = 0
        self.idle = threading.Condition()
        try:
            host, port = split_host_port(listen)
            family = socket.AF_INET
            if ":" in host:
                family = socket.AF_INET6
            elif host and not re.fullmatch(r"[0-9.]+", host):
                infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
                infos.sort(key=lambda info: info[0] != socket.AF_INET)
                family, host = infos[0][0], infos[0][4][0]
            self.address_family = family
            super().__init__((host, port), ChatHandler)
        except OSError as e:
            raise AgentError("listen tcp %s: bind: %s" % (listen, _os_error_text(e))) from None
        except ValueError as e:
            raise AgentError("listen tcp %s: %s" % (listen, e)) from None

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's FQDN, which can wait on DNS: not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[0], self.server_address[1]

    def bound_address(self):
        host, port = self.server_address[0], self.server_address[1]
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)

    def chat(self, session_id, message):
        """Runs one chat turn and returns (HTTP status, encoded reply)."""
        with self.sessions_lock:
            session = self.sessions.get(session_id)
            if session is None:
                session = self.sessions[session_id] = Session()
        with session.lock:
            start = time.monotonic()
            agent = Agent(self.model, self.tools, session.history)
            reply, error, status = "", "", 200
            try:
                reply = agent.handle_prompt(message)
            except Exception as e:  # noqa: BLE001
                if not isinstance(e, AgentError):
                    traceback.print_exc()
                error, status = _error_text(e), 502
            session.history = agent.history[-MAX_HISTORY:]
        names = " ".join(c["name"] for c in agent.calls)
        log("session=%s tools=[%s] status=%d took=%s err=%s", go_quote(session_id), names, status,
            _go_duration(time.monotonic() - start), error or "<nil>")
        return status, encode_reply(reply, agent.calls, error)

    def begin(self):
        with self.idle:
            self.inflight += 1

    def end(self):
        with self.idle:
            self.inflight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout):
        """Waits until no chat is in flight, at most timeout seconds."""
        with self.idle:
            return self.idle.wait_for(lambda: self.inflight == 0, timeout)


class ChatHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Go's server
    server_version = "customer-agent"
    sys_version = ""
    timeout = 60  # idle keep-alive connections and slow clients

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass  # Go's server does not log requests; chat() logs each turn

    def route(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/chat":
            if self.command == "POST":
                return self.handle_chat()
            return self.send_text(405, "Method Not Allowed\n", allow="POST")
        if path == "/healthz":
            if self.command in ("GET", "HEAD"):
                return self.send_text(200, "ok\n")
            return self.send_text(405, "Method Not Allowed\n", allow="GET, HEAD")
        return self.send_text(404, "404 page not found\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = route

    def send_text(self, status, text, allow=None):
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # an unread request body
        body = text.encode("utf-8")
        self.send_response(status)
        if allow:
            self.send_header("Allow", allow)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        if status != 200:
            self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, limit):
        """The request body, or None when it is larger than limit (the connection is then closed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(65537)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                size += n
                if size > limit:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(n))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self.close_connection = True
            if length <= 8 * limit:  # let the client finish sending and read the answer
                while length > 0:
                    length -= len(self.rfile.read(min(length, 65536))) or length
            return None
        return self.rfile.read(length)

    def handle_chat(self):
        self.server.begin()
        try:
            try:
                body = self.read_body(MAX_CHAT_BODY)
            except ValueError:
                self.close_connection = True
                return self.send_json(400, encode_reply("", [], "bad request: invalid request body"))
            if body is None:
                return self.send_json(400, encode_reply("", [], "bad request: http: request body too large"))
            text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
            if not text:
                return self.send_json(400, encode_reply("", [], "bad request: EOF"))
            try:
                # Like Go's json.Decoder, only the first JSON value counts.
                value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
                req = decode_fields(_clean(value), {"session": "", "message": ""}, "main.chatRequest")
            except (ValueError, RecursionError) as e:
                return self.send_json(400, encode_reply("", [], "bad request: %s" % e))
            if req["message"] == "":
                return self.send_json(400, encode_reply("", [], '"message" is empty'))
            status, reply = self.server.chat(req["session"] or "default", req["message"])
            self.send_json(status, reply)
        finally:
            self.server.end()


# ---------------------------------------------------------------------------------------------
# main

def write_file_atomic(path, data):
    """Writes then renames, so a reader polling the file never sees half of it."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="customer_agent.py", allow_abbrev=False,
                                description="The bank's customer-service agent (Python).")

    def flag(name, default, help):  # noqa: A002
        p.add_argument("-" + name, "--" + name, dest=name.replace("-", "_"), default=default, help=help)

    flag("listen", "127.0.0.1:8080", "chat API address (port 0 picks a free port; see -ready-file)")
    flag("model-url", "https://127.0.0.1:8443/v1/chat/completions", "OpenAI-compatible chat-completions endpoint")
    flag("model-ca", "", "PEM CA certificate to trust for the model endpoint (default: system roots)")
    flag("model", "model-x", "model name sent in requests")
    flag("customers", "customers.csv", "customer database (CSV: id,name,email,card_number,ssn,balance_cents)")
    flag("ready-file", "", "file written with the listen address once serving")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        tools = Tools(args.customers)
        model = ModelClient(args.model_url, args.model, args.model_ca)
        server = AgentServer(args.listen, model, tools)
    except AgentError as e:
        log("%s", e)
        return 1
    try:
        if args.ready_file:
            write_file_atomic(args.ready_file, server.bound_address() + "\n")
    except OSError as e:
        server.server_close()
        log("open %s: %s", args.ready_file, _os_error_text(e))
        return 1
    log("python %s, module %s, pid %d", sys.version.split()[0], __name__, os.getpid())
    log("listening on %s", server.bound_address())
    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    while not stop.wait(0.2):
        if not serving.is_alive():
            log("server stopped unexpectedly")
            return 1
    server.shutdown()  # no new connections; chats in flight may finish for 5s
    server.wait_idle(5.0)
    server.server_close()
    return 0


if __name__ == "__main__":
    # Run this file as the module "customer_agent" (see the header), not as __main__.
    import importlib.util

    _spec = importlib.util.spec_from_file_location("customer_agent", os.path.abspath(__file__))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["customer_agent"] = _module
    _spec.loader.exec_module(_module)
    sys.exit(_module.main())
