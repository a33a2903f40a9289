"""What the stdlib-only servers that `serval dev` tests run as local containers share: KServe's
component arguments, a JSON request handler, a threading server, and a JSON POST client."""

import argparse
import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def component_arguments(description):
    """What KServe gives a transformer or explainer: `--model_name`, `--predictor_host`,
    `--http_port` (default `$PORT`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--predictor_host", required=True)
    parser.add_argument("--http_port", type=int, default=int(os.environ.get("PORT", "8080")))
    return parser.parse_args()


def post_json(url, body):
    """(status, JSON answer) of a POST; the predictor's own error passes through."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, {"error": f"predictor at {url}: {e.code} {e.read().decode(errors='replace')}"}
    except (urllib.error.URLError, OSError, ValueError) as e:
        return 502, {"error": f"predictor at {url}: {e}"}


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def log_message(self, *args):
        pass  # thousands of requests per test: keep the replica logs short


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the queue-proxy opens many connections at once


def serve(port, handler, banner):
    server = Server(("127.0.0.1", port), handler)
    print(banner, flush=True)
    server.serve_forever()
