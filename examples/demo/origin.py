#!/usr/bin/env python3
"""Sample origin for the Rampart demo: a tiny shop front-end and JSON API.

Standard library only. Serves:
  GET  /            an HTML page
  GET  /healthz     "ok" (health checks)
  GET  /api/...     JSON describing the request as the origin saw it
                    (method, path, and the X-Forwarded-*/X-Request-Id headers Rampart adds)
  POST anything     JSON with the number of body bytes received

Usage: origin.py --port 9080 [--name web-1]
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-origin"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, ctype, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Origin", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _seen(self, extra=None):
        seen = {
            "origin": self.server.name,
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "x-forwarded-for": self.headers.get("X-Forwarded-For"),
            "x-forwarded-proto": self.headers.get("X-Forwarded-Proto"),
            "x-forwarded-port": self.headers.get("X-Forwarded-Port"),
            "x-request-id": self.headers.get("X-Request-Id"),
        }
        seen.update(extra or {})
        return json.dumps(seen, indent=2) + "\n"

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, "text/plain", "ok\n")
        if self.path.startswith("/api/"):
            return self._send(200, "application/json", self._seen())
        page = ("<!doctype html><html><head><title>Demo shop</title></head><body>"
                "<h1>Demo shop</h1><p>Served by %s through Rampart.</p></body></html>\n" % self.server.name)
        return self._send(200, "text/html; charset=utf-8", page)

    do_HEAD = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        return self._send(200, "application/json", self._seen({"body_bytes": len(body)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9080)
    ap.add_argument("--name", default="origin")
    a = ap.parse_args()
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    srv.name = a.name
    srv.serve_forever()


if __name__ == "__main__":
    main()
