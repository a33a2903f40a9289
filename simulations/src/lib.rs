//! `serval-simulations` replays request traces through the real autoscaler decider on a
//! simulated clock and compares scaling policies by cost, cold starts and waiting time.
//! Traces ([`trace`]) become requests with service times; the discrete-event engine
//! ([`engine`]) models the activator, replicas with a concurrency limit and a cold start,
//! and the 1 s metric tick; policies ([`policy`]) decide replica counts, three of them
//! through [`serval_autoscaler::Decider`], the same code as the live loop. Everything is
//! deterministic: the same trace, seed and policy give the same numbers.

mod cli;
pub mod engine;
mod error;
pub mod evaluate;
mod plot;
pub mod policy;
pub mod report;
pub mod rng;
mod run;
pub mod trace;

pub use cli::{run, SimulateArgs};
pub use error::SimError;
pub use run::{compare, PolicyRun, RunOptions};
