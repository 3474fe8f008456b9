"""pycontent is a Python agent whose tool reads a file and uploads it, for the receiver's test of
sensitive data by content (the file's name says nothing about what it holds).

It reads commands from stdin, one per line, and answers "ok <command>" when done:
  ask PATH URL    handle_prompt runs the tool export_report: read PATH, POST it to URL
"""
import http.client
import sys
import urllib.parse


def export_report(path, url):
    with open(path, "rb") as f:
        data = f.read()
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("POST", u.path, body=data, headers={"Content-Type": "text/csv"})
    conn.getresponse().read()
    conn.close()


def handle_prompt(path, url):
    export_report(path, url)


def main():
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "ask":
            handle_prompt(f[1], f[2])
        print("ok", f[0], flush=True)


if __name__ == "__main__":
    main()
