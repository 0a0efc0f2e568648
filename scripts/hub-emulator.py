#!/usr/bin/env python3
"""A loopback imitation of the Hugging Face Hub's file endpoints, for tests without internet.

Serves model repos from a directory laid out as ROOT/<owner>/<name>/<files> the way the Hub
serves them (docs/models.md):

  GET|HEAD /<owner>/<name>/resolve/<rev>/<path>
      git files: 200 (206 for a Range) with ETag (git blob sha1), X-Repo-Commit.
      LFS files (*.safetensors, *.bin, *.pt, or over 10 MB): 302 to a CDN-like URL on the other
      loopback host name (127.0.0.1 <-> localhost, same port) with X-Repo-Commit,
      X-Linked-Etag (the SHA-256), X-Linked-Size and ETag.
  GET|HEAD /cdn/<owner>/<name>/<sha256>   the LFS content; Range -> 206 + Content-Range.
  GET /api/models/<owner>/<name>[/revision/<rev>]   {"id", "sha", "siblings", "private", "gated"}
  GET /api/models/<owner>/<name>/tree/<rev>          [{"type","path","size","oid","lfs"}]

Revisions: `main` and the commit (a sha1 of the repo's files, so it changes when they do).
Errors: 404 with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound. A repo with
`.hub.json` {"private": true} answers 401 without `Authorization: Bearer <token>` (--token);
{"gated": true} answers 403 (X-Error-Code GatedRepo) without it. Every answer carries CORS
headers (Access-Control-Allow-Origin, Access-Control-Expose-Headers); OPTIONS is answered.

Faults for tests (on LFS content only), set per run with flags or at run time with
POST /_emulator/faults (JSON):
  cut_after N, cut_times K   the next K content answers stop after N bytes of their body
                             (the connection is closed mid-file)
  corrupt_at N, corrupt_times K   the next K content answers carry byte N of the file flipped
  no_cors true               answers carry no CORS headers (a browser then refuses them)
  delay_ms D                 a pause of D ms per 256 kB of content sent (to watch progress)
GET /_emulator/log lists the requests so far ({"method","path","range","status","sent"});
POST /_emulator/reset clears the log and the faults.

Usage: hub-emulator.py --root DIR [--port 0] [--port-file FILE] [--token T] [--cut-after N] ...
Prints `hub emulator on http://127.0.0.1:PORT` once it listens; stops on SIGTERM/SIGINT.
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf")
LFS_MIN_SIZE = 10_000_000
EXPOSE = ("X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag, Content-Range, Accept-Ranges, "
          "Content-Length, X-Error-Code, X-Error-Message, Location")


class Hub:
    def __init__(self, root, token, faults):
        self.root = os.path.abspath(root)
        self.token = token
        self.faults = dict(faults)
        self.log = []
        self.lock = threading.Lock()
        self.digests = {}

    def repo_dir(self, owner, name):
        path = os.path.join(self.root, owner, name)
        ok = re.fullmatch(r"[\w.-]+", owner) and re.fullmatch(r"[\w.-]+", name)
        return path if ok and os.path.isdir(path) else None

    def settings(self, repo):
        try:
            with open(os.path.join(repo, ".hub.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def files(self, repo):
        """Top-level files (the emulator's repos are flat), hidden ones excluded."""
        return sorted(
            f for f in os.listdir(repo)
            if not f.startswith(".") and os.path.isfile(os.path.join(repo, f))
        )

    def describe(self, path):
        """(size, sha256, git blob sha1) of a file, cached by size and mtime."""
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        with self.lock:
            if key in self.digests:
                return self.digests[key]
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha256.update(chunk)
                sha1.update(chunk)
        found = (st.st_size, sha256.hexdigest(), sha1.hexdigest())
        with self.lock:
            self.digests[key] = found
        return found

    def is_lfs(self, name, size):
        return name.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE

    def commit(self, repo):
        h = hashlib.sha1()
        for f in self.files(repo):
            size, sha256, _ = self.describe(os.path.join(repo, f))
            h.update(f"{f} {size} {sha256}\n".encode())
        return h.hexdigest()

    def take_fault(self, kind):
        """Consumes one use of a counted fault; returns its parameter or None."""
        with self.lock:
            times = self.faults.get(f"{kind}_times", 0)
            if kind == "cut" and "cut_after" in self.faults and times > 0:
                self.faults["cut_times"] = times - 1
                return int(self.faults["cut_after"])
            if kind == "corrupt" and "corrupt_at" in self.faults and times > 0:
                self.faults["corrupt_times"] = times - 1
                return int(self.faults["corrupt_at"])
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub = None  # set by main

    def log_message(self, *args):
        pass

    # -- plumbing -------------------------------------------------------------------------
    def record(self, status, sent=0):
        with self.hub.lock:
            self.hub.log.append({
                "method": self.command,
                "path": self.path,
                "range": self.headers.get("Range"),
                "auth": bool(self.headers.get("Authorization")),
                "status": status,
                "sent": sent,
            })

    def cors(self):
        if self.hub.faults.get("no_cors"):
            return
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
        self.send_header("Vary", "Origin")
        self.send_header("Access-Control-Expose-Headers", EXPOSE)

    def reply(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.cors()
        for k, v in headers:
            self.send_header(k, v)
        if body or status not in (204, 302):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.record(status, len(body))

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        headers = [("X-Error-Message", message)]
        if code:
            headers.append(("X-Error-Code", code))
        self.reply(status, body, headers=headers)

    def other_host(self):
        host = self.headers.get("Host", f"127.0.0.1:{self.server.server_port}")
        name, _, port = host.rpartition(":")
        if not name:
            name, port = host, str(self.server.server_port)
        cdn = self.server.cdn_host or ("localhost" if name.startswith("127.") else "127.0.0.1")
        return f"{cdn}:{port}"

    # -- access ---------------------------------------------------------------------------
    def open_repo(self, owner, name):
        """The repo's directory, or None after answering the error."""
        repo = self.hub.repo_dir(owner, name)
        if repo is None:
            self.error(404, "RepoNotFound", "Repository not found")
            return None
        settings = self.hub.settings(repo)
        authorized = self.headers.get("Authorization") == f"Bearer {self.hub.token}"
        if settings.get("private") and not authorized:
            self.error(401, None, "Invalid username or password.")
            return None
        if settings.get("gated") and not authorized:
            self.error(403, "GatedRepo", "Access to this model is restricted; accept its terms")
            return None
        return repo

    def revision_ok(self, repo, rev):
        rev = urllib.parse.unquote(rev)
        if rev in ("main", self.hub.commit(repo)):
            return True
        self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    # -- endpoints ------------------------------------------------------------------------
    def do_OPTIONS(self):
        self.send_response(204)
        self.cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Range, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.record(204)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/_emulator/faults":
            try:
                update = json.loads(body or b"{}")
            except ValueError:
                return self.error(400, None, "faults: not JSON")
            with self.hub.lock:
                self.hub.faults.update(update)
            return self.reply(200, json.dumps(self.hub.faults).encode())
        if path == "/_emulator/reset":
            with self.hub.lock:
                self.hub.faults = {}
                self.hub.log = []
            return self.reply(200, b"{}")
        self.error(404, None, "no such endpoint")

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_emulator/log":
            with self.hub.lock:
                body = json.dumps(self.hub.log).encode()
            return self.reply(200, body)
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self.api(parts[2], parts[3], parts[4:])
        if parts[:1] == ["cdn"] and len(parts) == 4:
            return self.cdn(parts[1], parts[2], parts[3])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(parts[0], parts[1], parts[3], "/".join(parts[4:]))
        self.error(404, None, "not a Hub endpoint")

    def api(self, owner, name, rest):
        repo = self.open_repo(owner, name)
        if repo is None:
            return
        commit = self.hub.commit(repo)
        if rest and rest[0] == "tree" and len(rest) >= 2:
            if not self.revision_ok(repo, rest[1]):
                return
            tree = []
            for f in self.hub.files(repo):
                size, sha256, sha1 = self.hub.describe(os.path.join(repo, f))
                entry = {"type": "file", "oid": sha1, "size": size, "path": f}
                if self.hub.is_lfs(f, size):
                    entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": 134}
                tree.append(entry)
            return self.reply(200, json.dumps(tree).encode())
        if rest and (rest[0] != "revision" or len(rest) != 2):
            return self.error(404, None, "not a Hub endpoint")
        if rest and not self.revision_ok(repo, rest[1]):
            return
        settings = self.hub.settings(repo)
        info = {
            "_id": commit[:24],
            "id": f"{owner}/{name}",
            "modelId": f"{owner}/{name}",
            "sha": commit,
            "private": bool(settings.get("private")),
            "gated": "manual" if settings.get("gated") else False,
            "siblings": [{"rfilename": f} for f in self.hub.files(repo)],
        }
        self.reply(200, json.dumps(info).encode())

    def resolve(self, owner, name, rev, file):
        repo = self.open_repo(owner, name)
        if repo is None or not self.revision_ok(repo, rev):
            return
        if file not in self.hub.files(repo):
            return self.error(404, "EntryNotFound", f"{file} does not exist on \"{rev}\"")
        path = os.path.join(repo, file)
        size, sha256, sha1 = self.hub.describe(path)
        commit = self.hub.commit(repo)
        if self.hub.is_lfs(file, size):
            location = f"http://{self.other_host()}/cdn/{owner}/{name}/{sha256}"
            return self.reply(302, b"", headers=[
                ("Location", location),
                ("X-Repo-Commit", commit),
                ("X-Linked-Etag", f'"{sha256}"'),
                ("X-Linked-Size", str(size)),
                ("ETag", f'"{sha1}"'),
            ])
        self.content(path, size, [("ETag", f'"{sha1}"'), ("X-Repo-Commit", commit)], False)

    def cdn(self, owner, name, sha256):
        repo = self.hub.repo_dir(owner, name)
        if repo is None:
            return self.error(404, None, "NoSuchKey")
        for f in self.hub.files(repo):
            size, digest, _ = self.hub.describe(os.path.join(repo, f))
            if digest == sha256:
                return self.content(os.path.join(repo, f), size, [("ETag", f'"{sha256}"')], True)
        self.error(404, None, "NoSuchKey")

    def content(self, path, size, headers, lfs):
        """The file's bytes, whole or the asked range; the active faults apply to LFS files."""
        start, end, status = 0, size - 1, 200
        asked = self.headers.get("Range")
        if asked:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", asked.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self.error(416, None, "bad range")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                return self.reply(416, b"", headers=[("Content-Range", f"bytes */{size}")])
            status = 206
        length = end - start + 1
        headers = list(headers) + [("Accept-Ranges", "bytes"),
                                   ("Content-Type", "application/octet-stream")]
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        self.send_response(status)
        self.cors()
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return self.record(status)
        # Range probes (bytes=0-0) are metadata requests: faults apply to real downloads.
        faulty = lfs and length > 1
        cut = self.hub.take_fault("cut") if faulty else None
        corrupt = self.hub.take_fault("corrupt") if faulty else None
        delay = float(self.hub.faults.get("delay_ms", 0)) / 1000.0
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while sent < length:
                n = min(256 * 1024, length - sent)
                if cut is not None:
                    n = min(n, cut - sent)
                    if n <= 0:
                        break
                chunk = bytearray(f.read(n))
                if not chunk:
                    break
                if corrupt is not None and start + sent <= corrupt < start + sent + len(chunk):
                    chunk[corrupt - start - sent] ^= 0xFF
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
                if delay:
                    time.sleep(delay)
        self.record(status, sent)
        if sent < length:
            # Cut mid-file: drop the connection without sending the rest.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that hangs up (or a cut we made) is not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ROOT/<owner>/<name>/ holds each repo's files")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--cdn-host", help="host name in LFS redirects (default: the other loopback name)")
    ap.add_argument("--token", default="hf_emulator_token", help="the token private/gated repos accept")
    ap.add_argument("--cut-after", type=int)
    ap.add_argument("--cut-times", type=int, default=1)
    ap.add_argument("--corrupt-at", type=int)
    ap.add_argument("--corrupt-times", type=int, default=1)
    ap.add_argument("--no-cors", action="store_true")
    ap.add_argument("--delay-ms", type=float, default=0)
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        sys.exit(f"hub-emulator.py: --root {args.root} is not a directory")
    faults = {}
    if args.cut_after is not None:
        faults.update(cut_after=args.cut_after, cut_times=args.cut_times)
    if args.corrupt_at is not None:
        faults.update(corrupt_at=args.corrupt_at, corrupt_times=args.corrupt_times)
    if args.no_cors:
        faults["no_cors"] = True
    if args.delay_ms:
        faults["delay_ms"] = args.delay_ms
    Handler.hub = Hub(args.root, args.token, faults)
    server = Server((args.host, args.port), Handler)
    server.cdn_host = args.cdn_host
    port = server.server_address[1]
    servers = [server]
    # `localhost` may resolve to ::1 first: listen there too (same port) when possible.
    if args.host == "127.0.0.1" and socket.has_ipv6:
        try:
            server6 = Server6(("::1", port), Handler)
            server6.cdn_host = args.cdn_host
            servers.append(server6)
        except OSError:
            pass
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"hub emulator on http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
