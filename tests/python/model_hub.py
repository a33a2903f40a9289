"""The model hubs' HTTP APIs over a local directory, for the storage tests: Hugging Face
(`/api/models/<repo>/tree/<rev>?recursive=true`, `/<repo>/resolve/<rev>/<path>`) and
ModelScope (`/api/v1/models/<repo>/repo/files?Revision=..&Recursive=true`,
`/api/v1/models/<repo>/repo?Revision=..&FilePath=..`), with byte ranges, and a bearer token
required when one is given. Repositories are `<root>/<org>/<model>/<revision>/...`.

usage: model_hub.py ROOT PORT [TOKEN]
"""

import hashlib
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from byte_ranges import send_file

ROOT, PORT = sys.argv[1], int(sys.argv[2])
TOKEN = sys.argv[3] if len(sys.argv) > 3 else None


def files_of(repo, revision):
    base = os.path.join(ROOT, repo, revision)
    for dirpath, _, names in os.walk(base):
        for name in sorted(names):
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, base), full


class Hub(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if TOKEN and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(401, b'{"error": "Invalid credentials in Authorization header"}')
        url = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        # Hugging Face
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "tree":
            repo, revision = "/".join(parts[2:4]), parts[5]
            entries = [{"type": "file", "path": rel, "size": os.path.getsize(full),
                        "oid": hashlib.sha1(open(full, "rb").read()).hexdigest()}
                       for rel, full in files_of(repo, revision)]
            if not entries:
                return self.reply(404, b'{"error": "Repository not found"}')
            return self.reply(200, json.dumps(entries).encode())
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, rel = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            full = os.path.join(ROOT, repo, revision, rel)
            if not os.path.isfile(full):
                return self.reply(404, b'{"error": "Entry not found"}')
            return send_file(self, full)
        # ModelScope
        if parts[:3] == ["api", "v1", "models"] and parts[5:] == ["repo", "files"]:
            repo, revision = "/".join(parts[3:5]), query.get("Revision", "master")
            files = [{"Path": rel, "Name": os.path.basename(rel), "Type": "blob",
                      "Size": os.path.getsize(full), "Revision": revision,
                      "Sha256": hashlib.sha256(open(full, "rb").read()).hexdigest()}
                     for rel, full in files_of(repo, revision)]
            if not files:
                return self.reply(200, b'{"Code": 10010205001, "Message": "model not found", "Data": null}')
            return self.reply(200, json.dumps({"Code": 200, "Data": {"Files": files}}).encode())
        if parts[:3] == ["api", "v1", "models"] and parts[5:] == ["repo"]:
            repo, revision = "/".join(parts[3:5]), query.get("Revision", "master")
            full = os.path.join(ROOT, repo, revision, query.get("FilePath", ""))
            if ".." in query.get("FilePath", "") or not os.path.isfile(full):
                return self.reply(404, b'{"Code": 404, "Message": "file not found"}')
            return send_file(self, full)
        self.reply(404, b'{"error": "no such endpoint"}')


ThreadingHTTPServer(("127.0.0.1", PORT), Hub).serve_forever()
