//! `serval-activator` is the gateway in front of every InferenceService. It maps a Host or
//! path to a service and revision (canary split, tag routing), buffers requests while a
//! revision has no ready pod and pokes the autoscaler, balances warm traffic over pods by
//! in-flight count, rate-limits, and reports what it holds to the autoscaler. Not built
//! yet: see the activator issue.
