"""Google Cloud's side of a gs:// download, for the storage tests, on one port: a GCE/GKE
metadata server (the `Metadata-Flavor: Google` ping at `/` and an access token at
`/computeMetadata/v1/instance/service-accounts/default/token`, as Workload Identity hands
out) and Cloud Storage's XML API (`GET /<bucket>?list-type=2&prefix=..`, `GET
/<bucket>/<key>` with byte ranges) over `<root>/<bucket>/<key>`. Buckets whose name starts
with `public-` answer anyone; the others only a bearer token this metadata server issued.
Each token issued and each refused request is appended to `<root>/.log`.

usage: gcp.py ROOT PORT
"""

import hashlib
import os
import sys
import urllib.parse
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from byte_ranges import send_file

ROOT, PORT = sys.argv[1], int(sys.argv[2])
TOKEN = "ya29.serval-test-token"


def log(line):
    with open(os.path.join(ROOT, ".log"), "a") as f:
        f.write(line + "\n")


def etag(full):
    stat = os.stat(full)
    return '"' + hashlib.md5(f"{stat.st_size}-{stat.st_mtime_ns}".encode()).hexdigest() + '"'


class Gcp(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/xml", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("", "/"):
            return self.reply(200, b"", "text/plain", [("Metadata-Flavor", "Google")])
        if url.path.startswith("/computeMetadata/"):
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403, b"missing Metadata-Flavor", "text/plain")
            if url.path.endswith("/service-accounts/default/token"):
                log("token issued")
                body = b'{"access_token":"%s","expires_in":3599,"token_type":"Bearer"}' % TOKEN.encode()
                return self.reply(200, body, "application/json", [("Metadata-Flavor", "Google")])
            return self.reply(404, b"", "text/plain")
        bucket, _, key = urllib.parse.unquote(url.path[1:]).partition("/")
        if not bucket.startswith("public-") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            log(f"refused {bucket} ({self.headers.get('Authorization') or 'anonymous'})")
            body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Anonymous caller does not have storage.objects.get access.</Message></Error>"
            return self.reply(401, body)
        if not key:
            return self.list(bucket, urllib.parse.parse_qs(url.query).get("prefix", [""])[0])
        full = os.path.join(ROOT, bucket, key)
        if not os.path.isfile(full):
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        modified = formatdate(os.path.getmtime(full), usegmt=True)
        send_file(self, full, [("ETag", etag(full)), ("Last-Modified", modified)])

    def list(self, bucket, prefix):
        base = os.path.join(ROOT, bucket)
        contents = []
        for dirpath, _, names in os.walk(base):
            for name in sorted(names):
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, base)
                if not key.startswith(prefix):
                    continue
                modified = datetime.fromtimestamp(os.path.getmtime(full), timezone.utc)
                contents.append(
                    "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size></Contents>"
                    % (escape(key), modified.strftime("%Y-%m-%dT%H:%M:%S.000Z"), escape(etag(full)), os.path.getsize(full))
                )
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><IsTruncated>false</IsTruncated>%s</ListBucketResult>"
            % (escape(bucket), escape(prefix), len(contents), "".join(contents))
        )
        self.reply(200, body.encode())


ThreadingHTTPServer(("127.0.0.1", PORT), Gcp).serve_forever()
