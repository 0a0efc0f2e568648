"""A static file server that makes the page cross-origin isolated (COOP + COEP on every
response), as docs/web.md asks of a host for the CPU engine on several Web Workers.

Usage: python3 serve_isolated.py PORT DIRECTORY
"""
import functools
import http.server
import os
import sys


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    if not os.path.isdir(directory):
        sys.exit(f"serve_isolated.py: {directory} is not a directory")
    handler = functools.partial(IsolatedHandler, directory=directory)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
