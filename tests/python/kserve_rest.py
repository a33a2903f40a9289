"""The kserve package's REST client against `serval runtime`: V1 and V2, JSON and binary."""

import asyncio

from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from common import main, tensor


async def v1(url, model, inputs):
    client = InferenceRESTClient(RESTConfig(protocol="v1"))
    try:
        return {
            "live": await client.is_server_live(url),
            "model_ready": await client.is_model_ready(url, model),
            "predictions": (await client.infer(url, {"instances": inputs.tolist()},
                                               model_name=model))["predictions"],
        }
    finally:
        await client.close()


async def v2(url, model, expected, inputs):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        seen = {
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, model),
            "ids": [],
            "outputs": {},
        }
        for binary in (False, True):
            request = InferInput(expected["input_name"], list(inputs.shape), "FP32")
            request.set_data_from_numpy(inputs, binary_data=binary)
            response = await client.infer(
                url,
                InferRequest(model_name=model, infer_inputs=[request], request_id="from-kserve"),
                model_name=model,
            )
            seen["ids"].append(response.id)
            seen["outputs"]["binary" if binary else "json"] = {
                o.name: tensor(o.as_numpy()) for o in response.outputs
            }
        return seen
    finally:
        await client.close()


def run(url, model, expected, inputs):
    return {
        "v1": asyncio.run(v1(url, model, inputs)),
        "v2": asyncio.run(v2(url, model, expected, inputs)),
    }


main(run)
