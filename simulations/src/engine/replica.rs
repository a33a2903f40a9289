//! One simulated replica: when it is ready, what it is serving, and the per-window numbers
//! its queue-proxy would report (time-weighted concurrency, requests, output and prompt
//! tokens).

use serval_api::Stat;

use crate::trace::Request;

/// One request's decoding on a replica. Its output tokens are counted in the windows they
/// stream out in, as the queue-proxy counts a streamed completion's chunks.
#[derive(Debug, Clone, Copy)]
struct Decoding {
    from: f64,
    until: f64,
    tokens: f64,
}

impl Decoding {
    /// The tokens it streams out in (since, now].
    fn between(&self, since: f64, now: f64) -> f64 {
        let length = self.until - self.from;
        if length <= 0.0 {
            // Decoded in no time: all of it in the window that holds that instant.
            return if self.from > since && self.from <= now {
                self.tokens
            } else {
                0.0
            };
        }
        let overlap = (self.until.min(now) - self.from.max(since)).max(0.0);
        self.tokens * overlap / length
    }
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
    decoding: Vec<Decoding>,
    /// Output tokens are counted up to here.
    decoded_until: f64,
    /// Output tokens counted but not yet reported (the fraction of a token carries over).
    tokens: f64,
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
            decoding: Vec::new(),
            decoded_until: now,
            tokens: 0.0,
            prompt_tokens: 0,
        }
    }

    pub(super) fn serving(&self) -> bool {
        self.ready && !self.draining
    }

    pub(super) fn became_ready(&mut self, now: f64) {
        self.ready = true;
        self.since = now;
        self.decoded_until = now;
    }

    fn settle(&mut self, now: f64) {
        self.area += f64::from(self.in_flight) * (now - self.since).max(0.0);
        self.since = now;
    }

    pub(super) fn start_request(&mut self, now: f64, request: &Request) {
        self.settle(now);
        self.in_flight += 1;
        self.requests += 1;
        if request.output_tokens > 0 {
            let from = now + request.first_token_s;
            self.decoding.push(Decoding {
                from,
                until: (now + request.service_s).max(from),
                tokens: f64::from(request.output_tokens),
            });
        }
    }

    /// A request ends. Its prompt tokens are counted now: the queue-proxy reads them from
    /// the completion's final `usage`.
    pub(super) fn finish_request(&mut self, now: f64, prompt_tokens: u32) {
        self.settle(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.prompt_tokens += u64::from(prompt_tokens);
    }

    /// Output tokens decoded between the last count and `now`.
    fn count_decoded(&mut self, now: f64) {
        let since = self.decoded_until;
        self.tokens += self
            .decoding
            .iter()
            .map(|d| d.between(since, now))
            .sum::<f64>();
        self.decoding.retain(|d| d.until > now);
        self.decoded_until = now;
    }

    /// The queue-proxy's report for the window that ends at `now`, which starts a new one.
    pub(super) fn close_window(&mut self, now: f64, window_s: f64) -> Stat {
        self.settle(now);
        self.count_decoded(now);
        let whole = self.tokens.floor();
        self.tokens -= whole;
        let stat = Stat {
            pod_name: String::new(),
            window_ms: (window_s * 1000.0).round() as u64,
            average_concurrency: self.area / window_s,
            request_count: self.requests,
            output_tokens: whole as u64,
            prompt_tokens: self.prompt_tokens,
            ..Stat::default()
        };
        self.area = 0.0;
        self.requests = 0;
        self.prompt_tokens = 0;
        stat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tokens_stream_out_over_decoding_and_prompt_tokens_come_at_the_end() {
        let mut replica = Replica::starting(0.0);
        replica.became_ready(0.0);
        // Started at 0.5 s: prefill until 1.5 s, then 100 tokens decoded until 5.5 s.
        let request = Request {
            at: 0.5,
            service_s: 5.0,
            first_token_s: 1.0,
            output_tokens: 100,
            prompt_tokens: 4000,
        };
        replica.start_request(0.5, &request);
        let mut windows = Vec::new();
        for second in 1..=6 {
            let now = f64::from(second);
            if now > 5.5 {
                replica.finish_request(5.5, request.prompt_tokens);
            }
            let stat = replica.close_window(now, 1.0);
            windows.push((stat.output_tokens, stat.prompt_tokens));
        }
        // 25 tokens/s from 1.5 s; a half token carries into the next window.
        assert_eq!(
            windows,
            vec![(0, 0), (12, 0), (25, 0), (25, 0), (25, 0), (13, 4000)]
        );
    }
}
