//! HTTP headers that carry Serval's contracts between processes.

/// Set by the activator on every request it forwards, so a queue-proxy can tell the
/// concurrency that came through the activator from direct traffic and the autoscaler does
/// not count it twice.
pub const VIA_ACTIVATOR: &str = "x-serval-via-activator";

/// The request id the activator assigns (or keeps, when the client sent one).
pub const REQUEST_ID: &str = "x-request-id";
