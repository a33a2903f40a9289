//! One simulated replica: when it is ready, what it is serving, and the per-window numbers
//! its queue-proxy would report (time-weighted concurrency, requests, output and prompt
//! tokens).

use serval_api::Stat;

/// The tokens of one finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Tokens {
    pub(super) output: u32,
    pub(super) prompt: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Replica {
    pub(super) ready: bool,
    /// Asked to go: takes no new requests and leaves when its last one finishes.
    pub(super) draining: bool,
    pub(super) in_flight: u32,
    /// Request-seconds in flight since the window began.
    area: f64,
    since: f64,
    requests: u64,
    tokens: u64,
    prompt_tokens: u64,
}

impl Replica {
    pub(super) fn starting(now: f64) -> Self {
        Self {
            ready: false,
            draining: false,
            in_flight: 0,
            area: 0.0,
            since: now,
            requests: 0,
            tokens: 0,
            prompt_tokens: 0,
        }
    }

    pub(super) fn serving(&self) -> bool {
        self.ready && !self.draining
    }

    pub(super) fn became_ready(&mut self, now: f64) {
        self.ready = true;
        self.since = now;
    }

    fn settle(&mut self, now: f64) {
        self.area += f64::from(self.in_flight) * (now - self.since).max(0.0);
        self.since = now;
    }

    pub(super) fn start_request(&mut self, now: f64) {
        self.settle(now);
        self.in_flight += 1;
        self.requests += 1;
    }

    /// A request ends; its tokens are counted now, as the queue-proxy reads them from the
    /// completion's usage.
    pub(super) fn finish_request(&mut self, now: f64, tokens: Tokens) {
        self.settle(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.tokens += u64::from(tokens.output);
        self.prompt_tokens += u64::from(tokens.prompt);
    }

    /// The queue-proxy's report for the window that ends at `now`, which starts a new one.
    pub(super) fn close_window(&mut self, now: f64, window_s: f64) -> Stat {
        self.settle(now);
        let stat = Stat {
            pod_name: String::new(),
            window_ms: (window_s * 1000.0).round() as u64,
            average_concurrency: self.area / window_s,
            request_count: self.requests,
            output_tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            ..Stat::default()
        };
        self.area = 0.0;
        self.requests = 0;
        self.tokens = 0;
        self.prompt_tokens = 0;
        stat
    }
}
