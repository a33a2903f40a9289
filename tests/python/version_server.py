"""A KServe V1 model server that says which version answered: `POST /v1/models/<name>:predict`
returns the instances it received as `predictions`, with `"version": "<--version>"`, so a test
can tell revisions apart and see what reached the predictor. Stdlib only; it listens on
127.0.0.1 at `--http_port` (or `$PORT`), and answers `GET /` and `GET /v1/models/<name>`."""

import argparse
import json
import os

from local_http import JsonHandler, serve

PREFIX = "/v1/models/"


def arguments():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", required=True)
    parser.add_argument("--http_port", "--http-port", type=int,
                        default=int(os.environ.get("PORT", "8080")))
    # What KServe gives a component that this server does not need (--model_name, ...).
    args, _ = parser.parse_known_args()
    return args


def handler(version):
    class Handler(JsonHandler):
        def do_GET(self):
            if self.path == "/" or self.path.startswith(PREFIX):
                name = self.path[len(PREFIX):] if self.path.startswith(PREFIX) else None
                self.reply(200, {"name": name, "ready": True, "version": version})
            else:
                self.reply(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            raw = self.body()
            if not (self.path.startswith(PREFIX) and self.path.endswith(":predict")):
                return self.reply(404, {"error": f"no route {self.path}"})
            try:
                instances = json.loads(raw)["instances"]
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(400, {"error": f"expected {{\"instances\": [...]}}: {e}"})
            self.reply(200, {"predictions": instances, "version": version})

    return Handler


def main():
    args = arguments()
    serve(args.http_port, handler(args.version),
          f"version {args.version} serving on 127.0.0.1:{args.http_port}")


if __name__ == "__main__":
    main()
