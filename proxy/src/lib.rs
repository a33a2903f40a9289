//! `serval-proxy` holds what the activator and the queue-proxy both do to a request on its
//! way through, one concern per module: the body types and a body that carries a guard
//! until it has been sent ([`body`]), a request body that can be taken back when it was
//! never read ([`reclaim`]), the pooled forwarding client and the rewrite of a request for
//! the next hop ([`forward`], [`headers`]) and how it is reached, over TCP or a local Unix
//! socket ([`connect`]), the JSON error answer ([`error`]), accepting,
//! serving and draining connections ([`serve`]), W3C trace context ([`trace_context`]) and
//! the time-weighted concurrency both proxies report ([`window`]).

pub mod body;
pub mod connect;
pub mod error;
pub mod forward;
pub mod headers;
pub mod reclaim;
pub mod serve;
pub mod trace_context;
pub mod window;
