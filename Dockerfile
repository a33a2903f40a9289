# syntax=docker/dockerfile:1
# Serval's one image: `serval <role>` for every role (controller, activator, autoscaler,
# runtime, ...) and the lean `serval-queue-proxy` sidecar, plus ONNX Runtime for the
# runtime's ONNX models. Build: docker build -t ghcr.io/serval-dev/serval:0.1.0 .

ARG ONNXRUNTIME_VERSION=1.22.1

# --- the two binaries --------------------------------------------------------------
FROM rust:1-bookworm AS build
# llama.cpp (the language-model runtime) builds from the crate's source with cmake, and
# bindgen needs libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds; the binaries are
# copied out in the same step because the cached target/ is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p serval --bins \
 && mkdir -p /out \
 && cp target/release/serval target/release/serval-queue-proxy /out/ \
 && strip /out/serval /out/serval-queue-proxy

# --- libonnxruntime.so from the onnxruntime wheel on PyPI ----------------------------
FROM python:3.12-slim-bookworm AS onnxruntime
ARG ONNXRUNTIME_VERSION
RUN pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --dest /wheel "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && python -m zipfile -e /wheel/onnxruntime-*.whl /ort \
 && mkdir -p /out \
 && cp "/ort/onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}" /out/

# --- the image ---------------------------------------------------------------------
FROM debian:bookworm-slim
ARG ONNXRUNTIME_VERSION
# ca-certificates for HTTPS (storage initializer, OTLP), git for the storage initializer's
# Git repositories; libstdc++ and libgcc, which ONNX Runtime and llama.cpp need, are
# already in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 serval \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin serval
COPY --from=build /out/serval /out/serval-queue-proxy /usr/local/bin/
COPY --from=onnxruntime /out/ /usr/local/lib/
RUN ln -s "libonnxruntime.so.${ONNXRUNTIME_VERSION}" /usr/local/lib/libonnxruntime.so \
 && ldconfig
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/serval"]
