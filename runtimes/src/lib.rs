//! `serval-runtimes` is Serval's model server (`serval runtime`): KServe V1 and Open
//! Inference Protocol V2 over REST and gRPC, and OpenAI completions for language models,
//! over ONNX Runtime, XGBoost, LightGBM and GGUF backends. Built so far: V1, V2 over REST
//! (with the binary tensor extension) and gRPC, Prometheus metrics under KServe's names,
//! adaptive batching, and the ONNX (ONNX Runtime, loaded at run time), XGBoost and
//! LightGBM (evaluated in Rust) backends. Not built yet: OpenAI completions and GGUF.

mod batcher;
mod config;
mod error;
mod grpc;
pub mod http;
mod metrics;
pub mod model;
mod served;
mod server;
pub mod tensor;
pub mod trees;

pub use config::{Config, ModelFormat};
pub use error::{InferError, RuntimeError};
pub use metrics::Metrics;
pub use served::Served;
pub use server::run;

/// Code generated from `proto/grpc_predict_v2.proto` (the Open Inference Protocol's
/// `inference.GRPCInferenceService`), client included for tests and tools.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("inference");
}
