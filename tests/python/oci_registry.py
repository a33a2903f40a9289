"""An OCI registry's pull API for the storage tests, with the bearer-token exchange real
registries use. Each `<root>/<repo>/<tag>/<arch>/` directory becomes one image of a
multi-platform index (`linux/<arch>`); its files are the image's root filesystem, packed as
one gzipped layer plus a second layer with whiteouts (`models/stale.bin`, and an opaque
`models/old/`), a new `models/old/new.txt` and a file outside `models/`.

usage: oci_registry.py ROOT PORT USER PASSWORD
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOKEN = "registry-token-" + hashlib.sha256(PASSWORD.encode()).hexdigest()[:16]
BLOBS, MANIFESTS = {}, {}
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    BLOBS[digest] = data
    return {"digest": digest, "size": len(data)}


def layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return blob(gzip.compress(raw.getvalue()))


for dirpath, dirnames, _ in os.walk(ROOT):
    # A tag directory is one whose every child is an architecture with a models/ tree.
    rel = os.path.relpath(dirpath, ROOT).split(os.sep)
    if len(rel) < 2 or not dirnames:
        continue
    if not all(os.path.isdir(os.path.join(dirpath, d, "models")) for d in dirnames):
        continue
    repo, tag = "/".join(rel[:-1]), rel[-1]
    images = []
    for arch in sorted(dirnames):
        base = os.path.join(dirpath, arch)
        files = []
        for d, _, names in os.walk(base):
            for n in sorted(names):
                full = os.path.join(d, n)
                files.append((os.path.relpath(full, base), open(full, "rb").read()))
        # The second layer deletes models/stale.bin and replaces what models/old/ held.
        upper = [("etc/os-release", b"ID=test\n"), ("models/old/new.txt", b"from the upper layer\n"),
                 ("models/.wh.stale.bin", b""), ("models/old/.wh..wh..opq", b"")]
        layers = [layer(files), layer(upper)]
        config = blob(json.dumps({"architecture": arch, "os": "linux"}).encode())
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                               "layers": [dict(l, mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for l in layers]}).encode()
        desc = blob(manifest)
        MANIFESTS[(repo, desc["digest"])] = (MANIFEST, manifest)
        images.append(dict(desc, mediaType=MANIFEST, platform={"architecture": arch, "os": "linux"}))
    MANIFESTS[(repo, tag)] = (INDEX, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": images}).encode())


class Registry(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        import base64
        path = self.path.split("?")[0]
        if path == "/token":
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self.reply(200, json.dumps({"token": TOKEN}).encode())
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://127.0.0.1:{PORT}/token",service="test-registry",scope="repository:pull"'
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers=[("WWW-Authenticate", challenge)])
        parts = path.strip("/").split("/")
        if parts[0] != "v2" or len(parts) < 4:
            return self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        repo, kind, ref = "/".join(parts[1:-2]), parts[-2], parts[-1]
        if kind == "manifests" and (repo, ref) in MANIFESTS:
            media, body = MANIFESTS[(repo, ref)]
            return self.reply(200, body, media)
        if kind == "blobs" and ref in BLOBS:
            data = BLOBS[ref]
            ranged = self.headers.get("Range")
            if ranged:
                first, last = ranged[6:].split("-")
                part = data[int(first):int(last) + 1]
                return self.reply(206, part, "application/octet-stream",
                                  [("Content-Range", f"bytes {first}-{int(first) + len(part) - 1}/{len(data)}")])
            return self.reply(200, data, "application/octet-stream")
        self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')


ThreadingHTTPServer(("127.0.0.1", PORT), Registry).serve_forever()
