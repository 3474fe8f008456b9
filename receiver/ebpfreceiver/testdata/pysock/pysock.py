"""pysock sends data the ways a Python agent's tool can, for the receiver's socket I/O tests.

It reads commands from stdin, one per line, and answers "ok <command>" when done:
  warmup URL               a GET on a keep-alive http.client connection
  export http URL N        a POST of N bytes on that same connection (no new connect)
  export udp ADDR N        os.write of N bytes on a connected UDP socket
  export sendmsg ADDR N    socket.sendmsg of N bytes in two buffers over TCP
  export early ADDR N      a send on the connection opened by "open" (before tracing)
  open ADDR                connect a TCP socket, before the receiver starts
"""
import http.client
import os
import socket
import sys
import urllib.parse

conn = None
early = None


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def warmup(url):
    global conn
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("GET", u.path)
    conn.getresponse().read()


def export(how, target, n):
    data = (b"customer-record;" * (n // 16 + 1))[:n]
    if how == "http":
        u = urllib.parse.urlsplit(target)
        conn.request("POST", u.path, body=data, headers={"Content-Type": "application/octet-stream"})
        conn.getresponse().read()
    elif how == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(addr(target))
        os.write(s.fileno(), data)
        s.close()
    elif how == "sendmsg":
        s = socket.create_connection(addr(target))
        s.sendmsg([data[: n // 2], data[n // 2 :]])
        s.close()
    elif how == "early":
        early.sendall(data)


def main():
    global early
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "warmup":
            warmup(f[1])
        elif f[0] == "export":
            export(f[1], f[2], int(f[3]))
        elif f[0] == "open":
            early = socket.create_connection(addr(f[1]))
        print("ok", f[0], flush=True)


if __name__ == "__main__":
    main()
