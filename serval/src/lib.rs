//! What the `serval` binary and the lean `serval-queue-proxy` sidecar binary share: logging
//! and trace export, the shutdown signal, and running a role as a process.

pub mod logging;
pub mod process;
pub mod signal;
