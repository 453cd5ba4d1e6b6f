#!/usr/bin/env python3
"""A webhook receiver for the demo and the job benchmarks: answers 204 to
every request, prints one line per request (or, with --quiet, a count every
second). Usage: python3 benches/webhook_sink.py [PORT] [--quiet]"""

import http.server
import sys
import threading
import time

received = 0
lock = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        global received
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with lock:
            received += 1
        if not QUIET:
            print(f"{self.command} {self.path} {body[:200].decode('utf-8', 'replace')}", flush=True)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = handle_any

    def log_message(self, *args):
        pass


def report():
    while True:
        time.sleep(1)
        print(f"received {received}", flush=True)


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    QUIET = "--quiet" in sys.argv
    port = int(args[0]) if args else 8787
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
    if QUIET:
        threading.Thread(target=report, daemon=True).start()
    print(f"webhook sink on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
