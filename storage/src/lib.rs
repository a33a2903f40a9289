//! Model storage: `serval storage-init` fetches a model named by a KServe `storageUri`
//! (S3, GCS, Azure Blob, HTTP(S), Hugging Face, local and PVC paths) into a directory, fast
//! (parallel ranged reads streamed to disk) and safe (a partial download never looks
//! complete, secrets never reach an error). The node model cache shares one copy per node.
//!
//! I/O lives here at the edge; what to fetch and what is already complete are decided from
//! listings and markers, so a re-run of a complete model does nothing.

mod archive;
pub mod cache;
mod environment;
mod error;
mod fetch;
mod image;
mod progress;
mod redact;
pub mod source;
mod uri;

pub use cache::ModelCache;
pub use environment::Environment;
pub use error::StorageError;
pub use fetch::{fetch, FetchOptions, FetchReport};
pub use image::fetch_uri;
pub use progress::ProgressStyle;
pub use redact::Redactor;
pub use uri::{Location, StorageUri};
