//! Requests held while replicas start are a backlog, not a load. The KPA counts the time
//! they wait as concurrency, so a cold start that holds ten requests of a function that
//! serves one at a time asks for fifteen replicas, each a cold start away and each kept a
//! stable window. A backlog needs only the replicas that drain it within one cold start
//! once they are up; more arrive after it is gone. The service time this takes comes from
//! Little's law over the seconds the revision served without a backlog: load over rate.

/// Seconds over which an observation's weight halves.
const HALF_LIFE_S: f64 = 300.0;
/// Requests served before the service time is trusted.
const REQUESTS_NEEDED: f64 = 10.0;

/// The learned mean service time of one revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceTime {
    load: f64,
    requests: f64,
}

impl ServiceTime {
    /// One second without a backlog: `load` requests in service on average, `rate`
    /// arriving per second.
    pub(crate) fn observe(&mut self, load: f64, rate: f64) {
        // Seconds without arrivals count too: a long request is in service through them.
        if !(load.is_finite() && rate.is_finite()) || load < 0.0 || rate < 0.0 {
            return;
        }
        let keep = 0.5f64.powf(1.0 / HALF_LIFE_S);
        self.load = self.load * keep + load;
        self.requests = self.requests * keep + rate;
    }

    /// Mean seconds a request spends in service; `None` until enough were seen.
    pub(crate) fn seconds(&self) -> Option<f64> {
        (self.requests >= REQUESTS_NEEDED).then(|| self.load / self.requests)
    }
}

/// What a revision needs while requests are held: what its arrivals need at the target
/// (`rate` per second, `service_s` each, `per_pod` concurrency per replica at the target)
/// plus the replicas that serve the `held` requests within one cold start
/// (`slots` requests at once per replica).
pub(crate) fn replicas_for(
    rate: f64,
    service_s: f64,
    per_pod: f64,
    held: f64,
    slots: f64,
    cold_start_s: f64,
) -> u32 {
    let flow = rate.max(0.0) * service_s / per_pod.max(f64::MIN_POSITIVE);
    let drain = held.max(0.0) * service_s / (slots.max(1.0) * cold_start_s.max(1.0));
    let wanted = (flow + drain).ceil();
    if wanted.is_finite() {
        wanted.clamp(1.0, f64::from(u32::MAX)) as u32
    } else {
        u32::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_time_is_load_over_rate_once_enough_requests_were_seen() {
        let mut service = ServiceTime::default();
        for _ in 0..4 {
            service.observe(1.0, 2.0);
        }
        assert_eq!(service.seconds(), None, "8 requests are too few");
        // A long request in service through a second without arrivals counts too.
        service.observe(1.0, 0.0);
        service.observe(1.0, 3.0);
        let seconds = service.seconds().expect("11 requests");
        assert!((seconds - 6.0 / 11.0).abs() < 0.01, "{seconds}");
        service.observe(f64::NAN, 1.0);
        service.observe(-1.0, 1.0);
        assert!((service.seconds().unwrap() - seconds).abs() < 1e-12);
    }

    #[test]
    fn replicas_for_a_backlog_drain_it_within_a_cold_start() {
        // (rate/s, service s, per pod at the target, held, slots, cold start s, replicas)
        let cases = [
            // A function serving one at a time: ten held, each half a second, drain in
            // 5 s of one replica; the arrivals need one more at a 70% target.
            (1.0, 0.5, 0.7, 10.0, 1.0, 10.0, 2),
            // Nothing held: what the arrivals need.
            (10.0, 0.5, 0.7, 0.0, 1.0, 10.0, 8),
            // Long requests: the backlog needs as many replicas as it fills.
            (0.0, 20.0, 5.6, 16.0, 8.0, 10.0, 4),
            // No arrivals and nothing held: one replica, never zero.
            (0.0, 0.5, 0.7, 0.0, 1.0, 10.0, 1),
        ];
        for (rate, service, per_pod, held, slots, cold, want) in cases {
            assert_eq!(
                replicas_for(rate, service, per_pod, held, slots, cold),
                want,
                "rate {rate}, service {service}, held {held}"
            );
        }
    }
}
