"""OpenAI's own Python client, unchanged, against a Serval endpoint (tests/tests/llm_dev.rs).

    python openai_client.py BASE_URL MODEL

BASE_URL ends in /v1. Prints one line per check and "all checks passed" at the end; any
failed check raises.
"""

import sys
import time

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


listed = [m.id for m in client.models.list()]
check("models.list names the model", listed == [model], listed)

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
)
choice = chat.choices[0]
check("chat answer", "Paris" in (choice.message.content or ""), choice.message.content)
check("chat role", choice.message.role == "assistant", choice.message.role)
check("chat finish_reason", choice.finish_reason in ("stop", "length"), choice.finish_reason)
usage = chat.usage
check(
    "chat usage",
    usage.prompt_tokens > 0
    and 0 < usage.completion_tokens <= 24
    and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
    usage,
)

# Streamed: chunks arrive as they are produced, the first long before the last.
start = time.monotonic()
arrivals, text, streamed_usage = [], "", None
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
        streamed_usage = chunk.usage
    if chunk.choices and chunk.choices[0].delta.content:
        arrivals.append(time.monotonic() - start)
        text += chunk.choices[0].delta.content
check("stream has one chunk per token", len(arrivals) >= 60, len(arrivals))
first, last = arrivals[0], arrivals[-1]
check("first chunk well before the last", first < last / 3, f"first {first:.3f}s last {last:.3f}s")
check(
    "stream usage at the end",
    streamed_usage is not None and streamed_usage.completion_tokens == 64,
    streamed_usage,
)

# A completion ending at a stop sequence: the text stops just before it.
completion = client.completions.create(
    model=model,
    prompt="The three primary colors are",
    max_tokens=32,
    temperature=0,
    stop=["green"],
)
check(
    "completion stops before the stop sequence",
    completion.choices[0].text == " the primary colors of the RGB color model: red, blue, and "
    and completion.choices[0].finish_reason == "stop",
    completion.choices[0],
)


def expect(name, exception, code=None, param=None, **request):
    kind = request.pop("kind", "chat")
    try:
        if kind == "chat":
            client.chat.completions.create(model=request.pop("model", model), **request)
        else:
            client.completions.create(model=request.pop("model", model), **request)
    except exception as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(name, (code is None or body.get("code") == code) and (param is None or body.get("param") == param), body)
        return
    raise AssertionError(f"{name}: no {exception.__name__}")


hello = [{"role": "user", "content": "hi"}]
expect("unknown model", openai.NotFoundError, code="model_not_found", model="gpt-4o", messages=hello)
expect("malformed messages", openai.BadRequestError, param="messages", messages=[{"role": "user"}])
expect(
    "max_tokens over the context",
    openai.BadRequestError,
    code="context_length_exceeded",
    param="max_tokens",
    messages=hello,
    max_tokens=1_000_000,
)
expect(
    "prompt too long",
    openai.BadRequestError,
    code="context_length_exceeded",
    kind="completion",
    prompt="word " * 5000,
)
try:
    client.completions.create(model=model, prompt="x" * 200_000, max_tokens=1)
    raise AssertionError("body over the limit: accepted")
except openai.APIStatusError as e:
    check("body over the limit", e.status_code == 413, e.status_code)
print("all checks passed")
