"""A KServe transformer: started with what KServe gives it (`--model_name`, `--predictor_host`,
`--http_port`), on `POST /v1/models/<name>:predict` it multiplies every number of the
instances by 10, calls `http://<predictor_host>/v1/models/<name>:predict`, and returns the
predictor's answer with `"transformed": true` and the predictor host it used. Stdlib only."""

import argparse
import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FACTOR = 10


def arguments():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--predictor_host", required=True)
    parser.add_argument("--http_port", type=int, default=int(os.environ.get("PORT", "8080")))
    return parser.parse_args()


def transform(value):
    if isinstance(value, list):
        return [transform(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * FACTOR
    return value


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


def handler(args):
    route = f"/v1/models/{args.model_name}:predict"
    upstream = f"http://{args.predictor_host}{route}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply(200, {"name": args.model_name, "ready": True})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != route:
                return self.reply(404, {"error": f"no route {self.path}; this is {route}"})
            try:
                request = json.loads(raw)
                request["instances"] = transform(request["instances"])
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(400, {"error": f"expected {{\"instances\": [...]}}: {e}"})
            status, answer = post_json(upstream, request)
            if status == 200:
                answer["transformed"] = True
                answer["predictor_host"] = args.predictor_host
            self.reply(status, answer)

        def log_message(self, *args):
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    args = arguments()
    server = Server(("127.0.0.1", args.http_port), handler(args))
    print(f"transformer of {args.model_name} on 127.0.0.1:{args.http_port}, "
          f"predictor at {args.predictor_host}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
