//! `serval-activator` is the gateway in front of every InferenceService. It maps a Host or
//! a `/serving/<namespace>/<isvc>/` path to a service and, by its canary split or a revision
//! tag, to one revision ([`RouteTable`]); rate-limits per service; holds requests in a
//! bounded per-revision queue while the revision has no ready pod, pokes the autoscaler at
//! once and probes new pods' queue-proxies directly so held requests go out the moment one
//! answers; balances warm traffic over pods with a breaker of `containerConcurrency` each
//! (Knative's throttler); forwards over pooled HTTP/1.1 or HTTP/2 cleartext connections with
//! bodies streamed both ways; and reports to the autoscaler, every second per revision, the
//! concurrency it observed and how many requests it holds. Pods come from an [`Endpoints`]
//! source and the autoscaler is reached through an [`AutoscalerClient`], each in-process for
//! `serval dev` (wired by the binary) or remote on Kubernetes. What it shares with the
//! queue-proxy (bodies, forwarding, serving and drain) is `serval-proxy`.

mod autoscaler;
mod config;
mod endpoints;
mod error;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod layers;
mod probe;
mod proxy;
mod report;
mod rng;
mod routes;
mod server;
mod split;
mod throttler;

pub use autoscaler::{
    AutoscalerClient, AutoscalerClientError, HttpAutoscaler, RecordingAutoscaler,
};
pub use config::Config;
pub use endpoints::{Endpoints, EndpointsSnapshot, LocalEndpoints, PodEndpoint};
pub use error::ActivatorError;
pub use routes::{
    apply_annotations, revision_settings, service_route, Component, RateLimit, RevisionSettings,
    RouteError, RouteTable, ServiceRoute, TrafficTarget, REVISION_TAG_HEADER,
};
pub use server::{run, Activator, ServeError};
