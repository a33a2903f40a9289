//! Which requests may join the running batch: a free sequence slot, and room in the KV
//! cache for the whole request (prompt plus every token it may generate), reserved when
//! it joins so a running sequence never runs out of cache and never has to be preempted.

/// The engine's sequence slots and KV-cache reservations. Pure bookkeeping.
#[derive(Debug)]
pub(crate) struct Slots {
    free: Vec<i32>,
    kv_tokens: usize,
    reserved: usize,
}

impl Slots {
    pub(crate) fn new(max_sequences: usize, kv_tokens: usize) -> Self {
        Self {
            // Lowest id first, so a lone request always runs as sequence 0.
            free: (0..max_sequences as i32).rev().collect(),
            kv_tokens,
            reserved: 0,
        }
    }

    /// Takes a slot and reserves `tokens` of cache, or says no (the request waits).
    pub(crate) fn admit(&mut self, tokens: usize) -> Option<i32> {
        if self.reserved + tokens > self.kv_tokens {
            return None;
        }
        let id = self.free.pop()?;
        self.reserved += tokens;
        Some(id)
    }

    pub(crate) fn release(&mut self, id: i32, tokens: usize) {
        self.reserved -= tokens.min(self.reserved);
        self.free.push(id);
        // Keep handing out the lowest free id first.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_slot_count() {
        let mut slots = Slots::new(2, 1000);
        assert_eq!(slots.admit(10), Some(0));
        assert_eq!(slots.admit(10), Some(1));
        assert_eq!(slots.admit(10), None);
        slots.release(0, 10);
        assert_eq!(slots.admit(10), Some(0));
    }

    #[test]
    fn admits_up_to_the_cache_budget() {
        let mut slots = Slots::new(8, 100);
        assert_eq!(slots.admit(60), Some(0));
        assert_eq!(slots.admit(60), None, "over the budget waits");
        assert_eq!(slots.admit(40), Some(1));
        assert_eq!(slots.admit(1), None, "the budget is spent");
        slots.release(0, 60);
        assert_eq!(slots.admit(60), Some(0));
    }
}
