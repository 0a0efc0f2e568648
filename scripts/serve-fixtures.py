#!/usr/bin/env python3
"""Static file server with CORS for the browser tests: serves DIR on 127.0.0.1:PORT so the
wasm tests (served by wasm-bindgen-test-runner on another port) can fetch fixture files."""
import functools
import http.server
import sys


class CorsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    root = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures"
    handler = functools.partial(CorsHandler, directory=root)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    main()
