//! `serval-autoscaler` decides how many replicas each revision needs. The decider is a pure
//! function of the time, windowed metrics, the spec and its own state, shared with the
//! simulator; the loop around it scrapes queue-proxies, takes activator pokes and actuates
//! through a `Scaler`. Not built yet: see the autoscaler issue.
