//! `serval-simulations` replays request traces through the real autoscaler decider on a
//! simulated clock and compares scaling policies by cost, cold starts and waiting time.
//! Not built yet: see the simulation issue.
