"""A KServe explainer: started with what KServe gives it (`--model_name`, `--predictor_host`,
`--http_port`), on `POST /v1/models/<name>:explain` it calls the predictor's
`http://<predictor_host>/v1/models/<name>:predict` with the same instances and returns
`{"explanations": [...], "predictions": <the predictor's>}`: per instance the class the
predictor scored highest, and its score. Stdlib only."""

import json

from local_http import JsonHandler, component_arguments, post_json, serve


def explain(prediction):
    """The top class of one instance's scores (or the prediction itself when it is a label)."""
    if isinstance(prediction, list) and prediction:
        top = max(range(len(prediction)), key=lambda i: prediction[i])
        return {"class": top, "score": prediction[top]}
    return {"class": prediction}


def handler(args):
    route = f"/v1/models/{args.model_name}:explain"
    upstream = f"http://{args.predictor_host}/v1/models/{args.model_name}:predict"

    class Handler(JsonHandler):
        def do_GET(self):
            self.reply(200, {"name": args.model_name, "ready": True})

        def do_POST(self):
            raw = self.body()
            if self.path != route:
                return self.reply(404, {"error": f"no route {self.path}; this is {route}"})
            try:
                request = json.loads(raw)
                instances = request["instances"]
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(400, {"error": f"expected {{\"instances\": [...]}}: {e}"})
            status, answer = post_json(upstream, {"instances": instances})
            if status != 200:
                return self.reply(status, answer)
            predictions = answer.get("predictions", [])
            self.reply(200, {"explanations": [explain(p) for p in predictions],
                             "predictions": predictions})

    return Handler


def main():
    args = component_arguments(__doc__)
    serve(args.http_port, handler(args),
          f"explainer of {args.model_name} on 127.0.0.1:{args.http_port}, "
          f"predictor at {args.predictor_host}")


if __name__ == "__main__":
    main()
