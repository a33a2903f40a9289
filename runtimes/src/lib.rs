//! `serval-runtimes` is Serval's model server (`serval runtime`): KServe V1 and Open
//! Inference Protocol V2 over REST and gRPC, with Prometheus metrics under KServe's names
//! and adaptive batching, over ONNX Runtime (loaded at run time), XGBoost and LightGBM
//! (evaluated in Rust); and, with the `llm` feature, OpenAI completions and chat
//! completions for GGUF language models through llama.cpp, with continuous batching and
//! metrics under vLLM's names.

mod batcher;
mod config;
mod error;
mod grpc;
pub mod http;
#[cfg(feature = "llm")]
mod llm;
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
