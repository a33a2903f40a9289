"""OpenAI's own Python client, unchanged, against a Serval endpoint (tests/tests/llm_dev.rs).

    python openai_client.py BASE_URL MODEL

BASE_URL ends in /v1. Prints, as one JSON object, what the client returned for each call;
the Rust test checks the values.
"""

import json
import sys
import time

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
seen = {}

seen["models"] = [m.id for m in client.models.list()]

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
)
seen["chat"] = {
    "content": chat.choices[0].message.content,
    "role": chat.choices[0].message.role,
    "finish_reason": chat.choices[0].finish_reason,
    "usage": chat.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
}

# Streamed: chunks arrive as they are produced, the first long before the last.
start = time.monotonic()
arrivals, streamed_usage = [], None
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Write a long story about a cat."}],
    max_tokens=64,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"ignore_eos": True},
)
for chunk in stream:
    if chunk.usage is not None:
        streamed_usage = chunk.usage.completion_tokens
    if chunk.choices and chunk.choices[0].delta.content:
        arrivals.append(time.monotonic() - start)
seen["stream"] = {
    "content_chunks": len(arrivals),
    "first_chunk_s": arrivals[0] if arrivals else None,
    "last_chunk_s": arrivals[-1] if arrivals else None,
    "completion_tokens": streamed_usage,
}

# A completion ending at a stop sequence: the text stops just before it.
completion = client.completions.create(
    model=model,
    prompt="The three primary colors are",
    max_tokens=32,
    temperature=0,
    stop=["green"],
)
seen["completion"] = {
    "text": completion.choices[0].text,
    "finish_reason": completion.choices[0].finish_reason,
}


def error(**request):
    """The status and error body a refused request got (None if it was not refused)."""
    kind = request.pop("kind", "chat")
    try:
        if kind == "chat":
            client.chat.completions.create(model=request.pop("model", model), **request)
        else:
            client.completions.create(model=request.pop("model", model), **request)
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "code": body.get("code"), "param": body.get("param")}
    return None


hello = [{"role": "user", "content": "hi"}]
seen["errors"] = {
    "unknown model": error(model="gpt-4o", messages=hello),
    "malformed messages": error(messages=[{"role": "user"}]),
    "max_tokens over the context": error(messages=hello, max_tokens=1_000_000),
    "prompt too long": error(kind="completion", prompt="word " * 5000),
    "body over the limit": error(kind="completion", prompt="x" * 200_000, max_tokens=1),
}
print(json.dumps(seen))
