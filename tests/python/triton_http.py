"""tritonclient.http against `serval runtime`: health, metadata, JSON and binary tensors."""

import tritonclient.http as http

from common import main, tensor


def run(url, model, expected, inputs):
    client = http.InferenceServerClient(url.removeprefix("http://"))
    seen = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "input_datatype": client.get_model_metadata(model)["inputs"][0]["datatype"],
        "outputs": {},
    }
    for binary in (False, True):
        request = http.InferInput(expected["input_name"], list(inputs.shape), "FP32")
        request.set_data_from_numpy(inputs, binary_data=binary)
        outputs = [http.InferRequestedOutput(name, binary_data=binary)
                   for name in expected["onnxruntime"]]
        result = client.infer(model, [request], outputs=outputs)
        seen["outputs"]["binary" if binary else "json"] = {
            name: tensor(result.as_numpy(name)) for name in expected["onnxruntime"]
        }
    return seen


main(run)
