//! `serval-controller` turns InferenceServices into revisions, pods and routes, with one
//! backend for Kubernetes (kube-rs) and one for local processes (`serval dev`), and writes
//! status from what it observed. Not built yet: see the dev and Kubernetes issues.
