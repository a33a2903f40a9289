//! The model server's errors, and the one place they become HTTP statuses and gRPC codes.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// Why `serval runtime` could not start or stopped serving. Each is one line that names
/// what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The model files could not be loaded: `path` is the file or directory.
    #[error("cannot load the model {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    /// The ONNX Runtime shared library is missing or unusable.
    #[error("{0}")]
    OnnxRuntime(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on the Unix socket {}: {source}", path.display())]
    BindUnix {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {protocol} server stopped: {reason}")]
    Serve {
        protocol: &'static str,
        reason: String,
    },
}

/// Why one request got no prediction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    #[error("model {0} is not served here")]
    ModelNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The body is not the protocol's shape (bad JSON, a missing field, a bad header).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// One input is wrong: its datatype, shape or data do not fit the request or the model.
    #[error("input {input}: {reason}")]
    InvalidInput { input: String, reason: String },
    #[error("output {name} is not an output of the model (it has {available})")]
    UnknownOutput { name: String, available: String },
    #[error("request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0} is not supported by this server")]
    Unsupported(String),
    #[error("overloaded: {0} requests are already waiting for the model")]
    Overloaded(usize),
    /// The backend failed on input that passed validation: the server's fault.
    #[error("the model failed: {0}")]
    Model(String),
}

impl InferError {
    pub(crate) fn input(input: impl Into<String>, reason: impl Into<String>) -> Self {
        InferError::InvalidInput {
            input: input.into(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            InferError::ModelNotFound(_) | InferError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            InferError::Malformed(_)
            | InferError::InvalidInput { .. }
            | InferError::UnknownOutput { .. } => StatusCode::BAD_REQUEST,
            InferError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InferError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            InferError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            InferError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            InferError::ModelNotFound(_) | InferError::RouteNotFound(_) => tonic::Code::NotFound,
            InferError::Malformed(_)
            | InferError::InvalidInput { .. }
            | InferError::UnknownOutput { .. } => tonic::Code::InvalidArgument,
            InferError::TooLarge { .. } | InferError::Overloaded(_) => {
                tonic::Code::ResourceExhausted
            }
            InferError::Unsupported(_) => tonic::Code::Unimplemented,
            InferError::Model(_) => tonic::Code::Internal,
        }
    }
}

/// KServe's error shape: `{"error": "..."}` with the matching status.
impl IntoResponse for InferError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<InferError> for tonic::Status {
    fn from(error: InferError) -> Self {
        tonic::Status::new(error.grpc_code(), error.to_string())
    }
}
