#!/usr/bin/env python3
"""HTTP/1.1 upstream for faultproxy_http.rs (stdlib only): answers every way the proxy must
relay and records what reached it.

usage: faultproxy_http_upstream.py PORTFILE   (binds 127.0.0.1:0, writes the port to PORTFILE)
  GET  /cl/N       200, JSON body with Content-Length (size varies with N)
  GET  /chunked/N  200, the same body sent chunked
  GET  /close/N    200, the same body without length, then the connection closes
  GET  /empty/N    204
  HEAD /cl/N       the /cl/N head, no body
  POST /items      stores the body (Content-Length or chunked), 201 {"stored": <body>}
  GET  /items      200 {"bodies": [every stored body, in order]}
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS = []
LOCK = threading.Lock()


def payload(n):
    return json.dumps({"n": n, "pad": "x" * (n % 50 * 37)}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, head_only=False, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_HEAD(self):
        kind, _, n = self.path.strip("/").partition("/")
        self.answer(200, payload(int(n or 0)), head_only=True)

    def do_GET(self):
        kind, _, n = self.path.strip("/").partition("/")
        if kind == "items":
            with LOCK:
                self.answer(200, json.dumps({"bodies": ITEMS}).encode())
            return
        body = payload(int(n or 0))
        if kind == "cl":
            self.answer(200, body)
        elif kind == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):
                part = body[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "close":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif kind == "empty":
            self.send_response(204)
            self.end_headers()
        else:
            self.answer(404, b"{}")

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        text = body.decode()
        with LOCK:
            ITEMS.append(text)
        self.answer(201, json.dumps({"stored": text}).encode())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
