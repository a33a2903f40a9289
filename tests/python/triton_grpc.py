"""tritonclient.grpc against `serval runtime`: health, metadata and raw tensors."""

import tritonclient.grpc as grpc

from common import main, tensor


def run(url, model, expected, inputs):
    client = grpc.InferenceServerClient(url.removeprefix("http://"))
    request = grpc.InferInput(expected["input_name"], list(inputs.shape), "FP32")
    request.set_data_from_numpy(inputs)
    result = client.infer(model, [request])
    try:
        client.infer("no-such-model", [request])
        unknown_model = None
    except grpc.InferenceServerException as e:
        unknown_model = str(e.status())
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "platform": client.get_model_metadata(model, as_json=True)["platform"],
        "outputs": {"raw": {name: tensor(result.as_numpy(name))
                            for name in expected["onnxruntime"]}},
        "unknown_model_status": unknown_model,
    }


main(run)
