//! The discrete-event core. Time is seconds from the start of the trace (`f64`). Requests
//! arrive from the trace; the activator model routes each to the least-loaded ready replica
//! with a free slot, or holds it (bounded; past the bound it is dropped); replicas take the
//! cold start before serving. Every second a tick closes the metric window, hands the
//! replicas' and the activator's reports to the policy, and actuates its answer.

mod replica;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use serval_api::Stat;

use crate::policy::{Observation, Policy};
use crate::trace::Request;
use replica::Replica;

/// The platform being simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seconds from a replica being asked for to it serving (scheduling, image, model load).
    pub cold_start_s: f64,
    /// Requests one replica serves at once (containerConcurrency), at least 1.
    pub concurrency: u32,
    /// Requests the activator holds at most; more are dropped.
    pub queue_limit: usize,
}

/// What happened to one service under one policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Seconds each served request waited before a replica took it.
    pub waits: Vec<f64>,
    /// Wait plus prefill of each served request.
    pub ttfts: Vec<f64>,
    /// Requests the activator had to hold because no ready replica had a free slot.
    pub cold: u64,
    pub dropped: u64,
    pub replica_seconds: f64,
    /// Replicas started.
    pub starts: u64,
    /// Per second: replicas (any state) and requests in flight or held, at the tick.
    pub timeline: Vec<(u32, u32)>,
}

/// Ordered `f64` for the event heaps (times are finite).
#[derive(Debug, Clone, Copy)]
struct Time(f64);
impl PartialEq for Time {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Time {}
impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Time {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Gives up on work still held this long after the trace ends (a policy that never
/// scales up): those requests count as dropped.
const GIVE_UP_AFTER_S: f64 = 86_400.0;

/// Replays `requests` (sorted by arrival) over at least `span_s` seconds under `policy`.
/// `progress` is called with the number of requests that have arrived, now and then.
pub fn simulate(
    requests: &[Request],
    span_s: f64,
    config: &SimConfig,
    policy: &mut dyn Policy,
    progress: &mut dyn FnMut(usize),
) -> Outcome {
    let mut engine = Engine {
        config: *config,
        requests,
        next: 0,
        replicas: BTreeMap::new(),
        next_id: 0,
        ready_heap: BinaryHeap::new(),
        completions: BinaryHeap::new(),
        queue: VecDeque::new(),
        held_area: 0.0,
        held_since: 0.0,
        held_arrivals: 0,
        window_peak: 0,
        window_arrivals: 0,
        last_arrival: None,
        cost_since: 0.0,
        out: Outcome::default(),
    };
    for _ in 0..policy.initial_ready() {
        let id = engine.add_replica(0.0);
        if let Some(r) = engine.replicas.get_mut(&id) {
            r.became_ready(0.0);
        }
    }
    engine.out.starts = 0;
    engine.ready_heap.clear();
    engine.run(span_s, policy, progress);
    engine.out
}

struct Engine<'a> {
    config: SimConfig,
    requests: &'a [Request],
    next: usize,
    replicas: BTreeMap<u64, Replica>,
    next_id: u64,
    ready_heap: BinaryHeap<Reverse<(Time, u64)>>,
    /// (end, replica, the request's prompt tokens)
    completions: BinaryHeap<Reverse<(Time, u64, u32)>>,
    queue: VecDeque<usize>,
    held_area: f64,
    held_since: f64,
    held_arrivals: u64,
    window_peak: u32,
    window_arrivals: u32,
    last_arrival: Option<f64>,
    cost_since: f64,
    out: Outcome,
}

impl Engine<'_> {
    fn run(&mut self, span_s: f64, policy: &mut dyn Policy, progress: &mut dyn FnMut(usize)) {
        let mut tick = 1.0_f64;
        let mut reported = 0;
        loop {
            let t_arrival = self.requests.get(self.next).map_or(f64::INFINITY, |r| r.at);
            let t_done = self
                .completions
                .peek()
                .map_or(f64::INFINITY, |c| (c.0).0 .0);
            let t_ready = self.ready_heap.peek().map_or(f64::INFINITY, |c| (c.0).0 .0);
            let t_event = t_arrival.min(t_done).min(t_ready);
            let pending = self.next < self.requests.len()
                || !self.queue.is_empty()
                || !self.completions.is_empty();
            if !pending && tick > span_s {
                break;
            }
            if tick > span_s + GIVE_UP_AFTER_S {
                self.out.dropped += self.queue.len() as u64;
                break;
            }
            if tick <= t_event {
                if self.replicas.is_empty() && self.queue.is_empty() {
                    if let Some(quiet) = policy.quiet_until(tick) {
                        let target = t_arrival.min(quiet).min(span_s + 1.0).floor();
                        if target > tick {
                            tick = target;
                            continue;
                        }
                    }
                }
                self.tick(tick, policy);
                tick += 1.0;
                if self.next - reported >= 4096 {
                    reported = self.next;
                    progress(self.next);
                }
                continue;
            }
            if t_done == t_event {
                self.complete();
            } else if t_ready == t_event {
                self.make_ready();
            } else {
                self.arrive(policy);
            }
        }
        progress(self.next);
    }

    fn add_replica(&mut self, now: f64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.replicas.insert(id, Replica::starting(now));
        self.ready_heap
            .push(Reverse((Time(now + self.config.cold_start_s), id)));
        self.out.starts += 1;
        id
    }

    /// Counts replica-seconds up to `now`.
    fn advance(&mut self, now: f64) {
        self.out.replica_seconds += self.replicas.len() as f64 * (now - self.cost_since).max(0.0);
        self.cost_since = now;
    }

    fn settle_held(&mut self, now: f64) {
        self.held_area += self.queue.len() as f64 * (now - self.held_since).max(0.0);
        self.held_since = now;
    }

    fn demand(&self) -> u32 {
        let in_flight: u32 = self.replicas.values().map(|r| r.in_flight).sum();
        in_flight + self.queue.len() as u32
    }

    fn complete(&mut self) {
        let Some(Reverse((Time(now), id, prompt_tokens))) = self.completions.pop() else {
            return;
        };
        self.advance(now);
        if let Some(replica) = self.replicas.get_mut(&id) {
            replica.finish_request(now, prompt_tokens);
            if replica.draining && replica.in_flight == 0 {
                self.replicas.remove(&id);
            }
        }
        self.dispatch_held(now);
    }

    fn make_ready(&mut self) {
        let Some(Reverse((Time(now), id))) = self.ready_heap.pop() else {
            return;
        };
        self.advance(now);
        if let Some(replica) = self.replicas.get_mut(&id) {
            replica.became_ready(now);
        }
        self.dispatch_held(now);
    }

    fn arrive(&mut self, policy: &mut dyn Policy) {
        let index = self.next;
        self.next += 1;
        let now = self.requests[index].at;
        self.advance(now);
        self.window_arrivals += 1;
        self.last_arrival = Some(now);
        if let Some(id) = self.pick() {
            self.start(index, id, now);
        } else if self.queue.len() >= self.config.queue_limit {
            self.out.dropped += 1;
        } else {
            self.settle_held(now);
            self.queue.push_back(index);
            self.held_arrivals += 1;
            self.out.cold += 1;
            let observation = self.observe(now, &[], None);
            let desired = policy.poke(&observation);
            self.actuate(now, desired);
        }
        self.window_peak = self.window_peak.max(self.demand());
    }

    /// The least-loaded serving replica with a free slot (lowest id on a tie).
    fn pick(&self) -> Option<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.serving() && r.in_flight < self.config.concurrency)
            .min_by_key(|(id, r)| (r.in_flight, **id))
            .map(|(id, _)| *id)
    }

    fn start(&mut self, index: usize, id: u64, now: f64) {
        let request = self.requests[index];
        let wait = now - request.at;
        self.out.waits.push(wait);
        self.out.ttfts.push(wait + request.first_token_s);
        if let Some(replica) = self.replicas.get_mut(&id) {
            replica.start_request(now, &request);
        }
        self.completions.push(Reverse((
            Time(now + request.service_s),
            id,
            request.prompt_tokens,
        )));
    }

    fn dispatch_held(&mut self, now: f64) {
        while !self.queue.is_empty() {
            let Some(id) = self.pick() else {
                return;
            };
            self.settle_held(now);
            if let Some(index) = self.queue.pop_front() {
                self.start(index, id, now);
            }
        }
    }

    fn observe<'s>(
        &self,
        now: f64,
        stats: &'s [Stat],
        activator: Option<&'s Stat>,
    ) -> Observation<'s> {
        let count =
            |f: fn(&Replica) -> bool| self.replicas.values().filter(|r| f(r)).count() as u32;
        let serving = count(Replica::serving);
        let starting = count(|r| !r.ready);
        Observation {
            now,
            stats,
            activator,
            ready: count(|r| r.ready),
            starting,
            current: serving + starting,
            queued: self.queue.len() as u32,
            in_flight: self.replicas.values().map(|r| r.in_flight).sum(),
            peak_demand: self.window_peak,
            arrivals: self.window_arrivals,
            last_arrival: self.last_arrival,
            concurrency: self.config.concurrency,
        }
    }

    fn tick(&mut self, now: f64, policy: &mut dyn Policy) {
        self.advance(now);
        let stats: Vec<Stat> = self
            .replicas
            .values_mut()
            .filter(|r| r.ready)
            .map(|r| r.close_window(now, 1.0))
            .collect();
        self.settle_held(now);
        let activator = (self.held_area > 0.0 || self.held_arrivals > 0).then(|| Stat {
            window_ms: 1000,
            average_concurrency: self.held_area,
            request_count: self.held_arrivals,
            held_request_count: self.held_arrivals,
            ..Stat::default()
        });
        self.held_area = 0.0;
        self.held_arrivals = 0;
        let observation = self.observe(now, &stats, activator.as_ref());
        let desired = policy.tick(&observation);
        self.actuate(now, desired);
        let demand = self.demand();
        self.window_peak = demand;
        self.window_arrivals = 0;
        let second = now as usize;
        if self.out.timeline.len() <= second {
            self.out.timeline.resize(second + 1, (0, 0));
        }
        self.out.timeline[second] = (self.replicas.len() as u32, demand);
    }

    /// Starts or stops replicas so that serving plus starting ones make `desired`.
    fn actuate(&mut self, now: f64, desired: u32) {
        let serving = self.replicas.values().filter(|r| r.serving()).count() as u32;
        let starting = self.replicas.values().filter(|r| !r.ready).count() as u32;
        let current = serving + starting;
        if desired > current {
            let mut add = desired - current;
            // Draining replicas are warm: keep them before starting new ones.
            for replica in self.replicas.values_mut().filter(|r| r.draining) {
                if add == 0 {
                    break;
                }
                replica.draining = false;
                add -= 1;
            }
            for _ in 0..add {
                self.add_replica(now);
            }
            self.dispatch_held(now);
        } else if desired < current {
            self.remove(current - desired);
        }
    }

    /// Removes starting replicas first (newest first), then idle ones, then drains busy ones.
    fn remove(&mut self, mut n: u32) {
        let mut victims: Vec<(u8, u32, Reverse<u64>)> = self
            .replicas
            .iter()
            .filter(|(_, r)| !r.draining)
            .map(|(id, r)| {
                let class = if !r.ready {
                    0
                } else if r.in_flight == 0 {
                    1
                } else {
                    2
                };
                (class, r.in_flight, Reverse(*id))
            })
            .collect();
        victims.sort();
        for (class, _, Reverse(id)) in victims {
            if n == 0 {
                break;
            }
            n -= 1;
            if class < 2 {
                self.replicas.remove(&id);
            } else if let Some(replica) = self.replicas.get_mut(&id) {
                replica.draining = true;
            }
        }
    }
}
