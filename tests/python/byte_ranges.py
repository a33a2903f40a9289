"""A file as a test server's answer to a GET, honouring a `Range: bytes=a-b` header."""

import os


def send_file(handler, full, headers=()):
    """Writes `full` (or the range the request asks for) as `handler`'s response, with
    `headers` besides the length and range ones."""
    size = os.path.getsize(full)
    start, end, status = 0, size - 1, 200
    ranged = handler.headers.get("Range")
    if ranged and ranged.startswith("bytes="):
        first, last = ranged[6:].split("-")
        start, end, status = int(first), min(int(last), size - 1), 206
    handler.send_response(status)
    handler.send_header("Content-Length", str(end - start + 1))
    handler.send_header("Accept-Ranges", "bytes")
    for name, value in headers:
        handler.send_header(name, value)
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end}/{size}")
    handler.end_headers()
    with open(full, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            handler.wfile.write(chunk)
            left -= len(chunk)
