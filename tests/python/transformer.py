"""A KServe transformer: started with what KServe gives it (`--model_name`, `--predictor_host`,
`--http_port`), on `POST /v1/models/<name>:predict` it multiplies every number of the
instances by 10, calls `http://<predictor_host>/v1/models/<name>:predict`, and returns the
predictor's answer with `"transformed": true` and the predictor host it used. Stdlib only."""

import json

from local_http import JsonHandler, component_arguments, post_json, serve

FACTOR = 10


def transform(value):
    if isinstance(value, list):
        return [transform(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * FACTOR
    return value


def handler(args):
    route = f"/v1/models/{args.model_name}:predict"
    upstream = f"http://{args.predictor_host}{route}"

    class Handler(JsonHandler):
        def do_GET(self):
            self.reply(200, {"name": args.model_name, "ready": True})

        def do_POST(self):
            raw = self.body()
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

    return Handler


def main():
    args = component_arguments(__doc__)
    serve(args.http_port, handler(args),
          f"transformer of {args.model_name} on 127.0.0.1:{args.http_port}, "
          f"predictor at {args.predictor_host}")


if __name__ == "__main__":
    main()
