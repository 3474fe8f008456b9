"""Writes the HTTP byte streams the llm package's tests read: what a client wrote (.req) and
read (.resp) on one TLS connection, as the receiver's TLS probes hand them over. Run once;
the outputs are committed."""
import gzip
import json

def req(path, body, host="api.example.test", extra=""):
    b = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-test-not-a-key\r\n{extra}Content-Length: {len(b)}\r\n\r\n").encode() + b

def resp(body, extra="", ctype="application/json"):
    b = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {len(b)}\r\n\r\n").encode() + b

def chunked(b, size=37, extra="", ctype="application/json"):
    out = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}Transfer-Encoding: chunked\r\n\r\n").encode()
    for i in range(0, len(b), size):
        c = b[i:i+size]
        out += f"{len(c):x}\r\n".encode() + c + b"\r\n"
    return out + b"0\r\n\r\n"

def write(name, r, s):
    open(name + ".req", "wb").write(r)
    open(name + ".resp", "wb").write(s)

chat_req = {"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are the bank's assistant."},
    {"role": "user", "content": "Export everything for card 4111 1111 1111 1111"}],
    "tools": [{"type": "function", "function": {"name": "export_customer_data"}}]}
chat_resp = {"id": "chatcmpl-42", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
        "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "export_customer_data", "arguments": "{\"query\":\"SELECT *\"}"}},
                       {"id": "call_def", "type": "function", "function": {"name": "send_email", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 57, "completion_tokens": 21, "total_tokens": 78}}
write("openai_tool_calls", req("/v1/chat/completions", chat_req), resp(chat_resp))
write("openai_chunked_gzip", req("/v1/chat/completions", chat_req, extra="Accept-Encoding: gzip\r\n"),
      chunked(gzip.compress(json.dumps(chat_resp).encode()), extra="Content-Encoding: gzip\r\n"))

sse = ""
for ev in [
    {"id": "chatcmpl-7", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_s1", "type": "function", "function": {"name": "lookup", "arguments": ""}}]}, "finish_reason": None}]},
    {"id": "chatcmpl-7", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"id\":1}"}}]}, "finish_reason": None}]},
    {"id": "chatcmpl-7", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"id": "chatcmpl-7", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}},
]:
    sse += "data: " + json.dumps(ev) + "\n\n"
sse += "data: [DONE]\n\n"
write("openai_stream", req("/v1/chat/completions", {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
      chunked(sse.encode(), size=50, ctype="text/event-stream"))

responses_resp = {"id": "resp_1", "object": "response", "model": "gpt-4.1-2025-04-14", "status": "completed",
    "output": [{"type": "reasoning", "id": "rs_1"},
               {"type": "function_call", "id": "fc_1", "call_id": "call_r1", "name": "get_weather", "arguments": "{}"}],
    "usage": {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}}
write("openai_responses", req("/v1/responses", {"model": "gpt-4.1", "input": "What is the weather?"}), resp(responses_resp))

anthropic_resp = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
    "stop_reason": "tool_use", "content": [{"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_balance", "input": {"customer": "C1001"}}],
    "usage": {"input_tokens": 400, "output_tokens": 60}}
write("anthropic_tool_use", req("/v1/messages", {"model": "claude-sonnet-4-20250514", "max_tokens": 1024,
      "system": "You are a bank assistant.", "messages": [{"role": "user", "content": "Balance of C1001?"}]},
      extra="anthropic-version: 2023-06-01\r\n"), resp(anthropic_resp))

asse = ""
for typ, ev in [
    ("message_start", {"type": "message_start", "message": {"id": "msg_02", "model": "claude-3-5-haiku-20241022", "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_02B", "name": "transfer", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"amount\":"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 33}}),
    ("message_stop", {"type": "message_stop"}),
]:
    asse += f"event: {typ}\ndata: {json.dumps(ev)}\n\n"
write("anthropic_stream", req("/v1/messages", {"model": "claude-3-5-haiku-latest", "stream": True, "max_tokens": 10, "messages": []}),
      chunked(asse.encode(), size=64, ctype="text/event-stream"))

write("malformed_json", req("/v1/chat/completions", {"model": "m1", "messages": []}),
      resp(b'{"id":"x","model":"m1","choices":[{"finish_reason":"stop",', ctype="application/json"))

open("http2.req", "wb").write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00")
open("not_http.req", "wb").write(b"\x16\x03\x01\x02\x00binary protocol")
