//! Open Inference Protocol V2 over gRPC (`inference.GRPCInferenceService`).
mod contents;
mod service;

pub(crate) use service::service;
