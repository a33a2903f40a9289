"""tritonclient.grpc against `serval runtime`: health, metadata and raw tensors."""

import tritonclient.grpc as grpc

from common import check_output, main


def run(url, model, expected, inputs):
    client = grpc.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model)
    metadata = client.get_model_metadata(model, as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx", metadata
    tensor = grpc.InferInput(expected["input_name"], list(inputs.shape), "FP32")
    tensor.set_data_from_numpy(inputs)
    result = client.infer(model, [tensor])
    for name, want in expected["onnxruntime"].items():
        check_output(name, result.as_numpy(name), want)
    try:
        client.infer("no-such-model", [tensor])
        raise AssertionError("an unknown model must fail")
    except grpc.InferenceServerException as e:
        assert "NOT_FOUND" in str(e.status()), e


main(run)
