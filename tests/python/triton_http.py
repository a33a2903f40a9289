"""tritonclient.http against `serval runtime`: health, metadata, JSON and binary tensors."""

import tritonclient.http as http

from common import check_output, main


def run(url, model, expected, inputs):
    client = http.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model)
    metadata = client.get_model_metadata(model)
    assert metadata["inputs"][0]["datatype"] == "FP32", metadata
    for binary in (False, True):
        tensor = http.InferInput(expected["input_name"], list(inputs.shape), "FP32")
        tensor.set_data_from_numpy(inputs, binary_data=binary)
        outputs = [http.InferRequestedOutput(name, binary_data=binary)
                   for name in expected["onnxruntime"]]
        result = client.infer(model, [tensor], outputs=outputs)
        for name, want in expected["onnxruntime"].items():
            check_output(f"{name} (binary={binary})", result.as_numpy(name), want)


main(run)
