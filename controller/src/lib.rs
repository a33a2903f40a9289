//! `serval-controller` turns InferenceServices into revisions, pods and routes, with one
//! backend for Kubernetes (kube-rs, to come) and one for local processes ([`local`], used
//! by `serval dev`), and writes status from what it observed.

pub mod kubernetes;
pub mod local;
pub mod rollout;
