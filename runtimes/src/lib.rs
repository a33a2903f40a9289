//! `serval-runtimes` is Serval's model server (`serval runtime`): KServe V1 and Open
//! Inference Protocol V2 over REST and gRPC, and OpenAI completions for language models,
//! over ONNX Runtime, XGBoost, LightGBM and GGUF backends. Not built yet: see the runtime
//! issue.

pub mod trees;
