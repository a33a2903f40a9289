//! The local process backend: each replica of a revision is a `serval queue-proxy` process
//! in front of a model-server process, on free loopback ports, supervised like a pod —
//! replaced with backoff when a process dies, drained before it is stopped.

mod builtin;
mod ports;
mod reconciler;
mod replica;
mod supervisor;
mod translate;

pub use builtin::builtin_runtimes;
pub use reconciler::{LocalManifests, LocalPlatform, LocalReconciler, LocalService};
pub use replica::{QueueProxyCommand, ReplicaInfo, ReplicaSpec, EXIT_WITH_PARENT_ENV};
pub use supervisor::{Supervisor, SupervisorError};
pub use translate::{
    companion_replica_spec, local_model_dir, predictor_replica_spec, TranslateError, SERVAL_IMAGE,
};
