"""The kserve package's REST client against `serval runtime`: V1 and V2, JSON and binary."""

import asyncio

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from common import check_output, main


async def v1(url, model, expected, inputs):
    client = InferenceRESTClient(RESTConfig(protocol="v1"))
    try:
        assert await client.is_server_live(url)
        assert await client.is_model_ready(url, model)
        result = await client.infer(url, {"instances": inputs.tolist()}, model_name=model)
        want = expected["sklearn"]["predict"]
        if isinstance(want[0], str):
            assert result["predictions"] == want, result
        else:
            np.testing.assert_allclose(result["predictions"], want, rtol=1e-4, atol=1e-4)
    finally:
        await client.close()


async def v2(url, model, expected, inputs):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, model)
        for binary in (False, True):
            tensor = InferInput(expected["input_name"], list(inputs.shape), "FP32")
            tensor.set_data_from_numpy(inputs, binary_data=binary)
            request = InferRequest(model_name=model, infer_inputs=[tensor],
                                   request_id="from-kserve")
            response = await client.infer(url, request, model_name=model)
            assert response.id == "from-kserve", response.id
            by_name = {o.name: o for o in response.outputs}
            for name, want in expected["onnxruntime"].items():
                check_output(f"{name} (binary={binary})", by_name[name].as_numpy(), want)
    finally:
        await client.close()


def run(url, model, expected, inputs):
    asyncio.run(v1(url, model, expected, inputs))
    asyncio.run(v2(url, model, expected, inputs))


main(run)
