#!/usr/bin/env python3
"""Static file server with CORS for the browser tests: serves DIR on 127.0.0.1:PORT so the
wasm tests (served by wasm-bindgen-test-runner on another port) can fetch fixture files.

`GET /cases.json` lists the fixture cases under DIR (a directory with golden.safetensors, the
same rule as `bd3lm::fixture::case_dirs`), so the browser tests hard-code no case names."""
import functools
import http.server
import json
import os
import sys


def case_names(root):
    return sorted(
        d for d in os.listdir(root)
        if os.path.isfile(os.path.join(root, d, "golden.safetensors"))
    )


class CorsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):
        if self.path.split("?")[0] == "/cases.json":
            body = json.dumps(case_names(self.directory)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    root = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures"
    # A server of no fixture would let the browser tests fail far from the cause: refuse it.
    if not os.path.isdir(root) or not case_names(root):
        sys.exit(f"serve-fixtures.py: no fixture case (a directory with golden.safetensors) in {root}")
    handler = functools.partial(CorsHandler, directory=root)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    main()
