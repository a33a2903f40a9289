//! The runtime's one configuration struct: flags, each also read from an environment
//! variable, because a ServingRuntime configures its container through args and env.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::RuntimeError;

/// Which backend serves the model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Onnx,
    Xgboost,
    Lightgbm,
    /// A GGUF language model, served over OpenAI's API (needs the `llm` feature).
    Gguf,
}

/// How `serval runtime` is configured.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// The name clients use in URLs (`/v1/models/<name>`, `/v2/models/<name>`).
    #[arg(long, env = "SERVAL_MODEL_NAME", default_value = "model")]
    pub model_name: String,
    /// Directory holding the model file (KServe's storage initializer writes here).
    #[arg(long, env = "SERVAL_MODEL_DIR", default_value = "/mnt/models")]
    pub model_dir: PathBuf,
    /// The backend; picked from the files in the model directory when unset.
    #[arg(long, env = "SERVAL_MODEL_FORMAT", value_enum)]
    pub model_format: Option<ModelFormat>,
    /// Address both servers listen on.
    #[arg(long, env = "SERVAL_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// REST port: KServe V1, Open Inference Protocol V2, `/metrics`.
    #[arg(long, env = "SERVAL_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// A Unix socket to serve REST on as well, for the queue-proxy beside it (`serval dev`
    /// and Serval's revision pods set it); a stale socket file there is replaced. Unset:
    /// TCP only.
    #[arg(long, env = "SERVAL_HTTP_LISTEN_UNIX")]
    pub http_listen_unix: Option<PathBuf>,
    /// gRPC port: `inference.GRPCInferenceService`.
    #[arg(long, env = "SERVAL_GRPC_PORT", default_value_t = 8081)]
    pub grpc_port: u16,
    /// Largest request body (REST) or message (gRPC) accepted, in bytes.
    #[arg(long, env = "SERVAL_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Rows merged into one model call; 0 or 1 turns batching off.
    #[arg(long, env = "SERVAL_MAX_BATCH_SIZE", default_value_t = 0)]
    pub max_batch_size: usize,
    /// Longest a request waits for others to share its batch, in milliseconds.
    #[arg(long, env = "SERVAL_MAX_LATENCY_MS", default_value_t = 5)]
    pub max_latency_ms: u64,
    /// The ONNX Runtime shared library (`libonnxruntime.so`), loaded only for ONNX models.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_dylib_path: Option<PathBuf>,
    /// Language models: sequences generated together in one batch (vLLM's flag name).
    /// Each has a KV cache of `--max-model-len` tokens.
    #[arg(long, env = "SERVAL_MAX_NUM_SEQS", default_value_t = 8)]
    pub max_num_seqs: usize,
    /// Language models: longest prompt plus output of one request, in tokens; at most the
    /// model's trained context.
    #[arg(long, env = "SERVAL_MAX_MODEL_LEN", default_value_t = 2048)]
    pub max_model_len: usize,
    /// Language models: requests waiting for a place in the batch; beyond it, 503.
    #[arg(long, env = "SERVAL_MAX_WAITING", default_value_t = 256)]
    pub max_waiting: usize,
    /// Language models: CPU threads for generation; 0 is one per core.
    #[arg(long, env = "SERVAL_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Language models: layers offloaded to the GPU (CUDA builds); 0 keeps all on the CPU.
    #[arg(long, env = "SERVAL_GPU_LAYERS", default_value_t = DEFAULT_GPU_LAYERS)]
    pub gpu_layers: u32,
}

/// A CUDA build offloads every layer unless told otherwise.
const DEFAULT_GPU_LAYERS: u32 = if cfg!(feature = "cuda") { 999 } else { 0 };

impl Config {
    /// Defaults, serving `model_dir` under `model_name`; for embedding and tests.
    pub fn new(model_name: impl Into<String>, model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_name: model_name.into(),
            model_dir: model_dir.into(),
            model_format: None,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            http_port: 8080,
            http_listen_unix: None,
            grpc_port: 8081,
            max_body_bytes: 16 << 20,
            max_batch_size: 0,
            max_latency_ms: 5,
            ort_dylib_path: None,
            max_num_seqs: 8,
            max_model_len: 2048,
            max_waiting: 256,
            threads: 0,
            gpu_layers: DEFAULT_GPU_LAYERS,
        }
    }

    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: &str| Err(RuntimeError::Config(m.into()));
        if self.model_name.is_empty() || self.model_name.contains(['/', ':']) {
            return bad("--model-name must be non-empty without '/' or ':'");
        }
        if self.max_body_bytes == 0 {
            return bad("--max-body-bytes must be positive");
        }
        if self.max_num_seqs == 0 || self.max_num_seqs > 256 {
            return bad("--max-num-seqs must be between 1 and 256");
        }
        if self.max_model_len < 2 {
            return bad("--max-model-len must be at least 2");
        }
        if self.max_waiting == 0 {
            return bad("--max-waiting must be positive");
        }
        if self.http_port != 0 && self.http_port == self.grpc_port {
            return bad("--http-port and --grpc-port must differ");
        }
        Ok(())
    }

    pub fn max_latency(&self) -> Duration {
        Duration::from_millis(self.max_latency_ms)
    }

    /// Whether concurrent requests are merged into one model call.
    pub fn batching(&self) -> bool {
        self.max_batch_size > 1
    }
}
