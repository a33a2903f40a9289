//! Which requests may join the running batch: one of a fixed number of sequence slots,
//! each with its own KV cache of `--max-model-len` tokens. A request is checked against
//! that length before it queues, so a running sequence never runs out of cache and is
//! never preempted.

/// The engine's free sequence ids. Pure bookkeeping.
#[derive(Debug)]
pub(crate) struct Slots {
    free: Vec<i32>,
}

impl Slots {
    pub(crate) fn new(max_sequences: usize) -> Self {
        Self {
            // Lowest id first, so a lone request always runs as sequence 0.
            free: (0..max_sequences as i32).rev().collect(),
        }
    }

    /// Takes a slot, or says no (the request waits).
    pub(crate) fn admit(&mut self) -> Option<i32> {
        self.free.pop()
    }

    pub(crate) fn release(&mut self, id: i32) {
        self.free.push(id);
        // Keep handing out the lowest free id first.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_slot_count_lowest_id_first() {
        let mut slots = Slots::new(3);
        assert_eq!(slots.admit(), Some(0));
        assert_eq!(slots.admit(), Some(1));
        assert_eq!(slots.admit(), Some(2));
        assert_eq!(slots.admit(), None, "a fourth request waits");
        slots.release(1);
        slots.release(0);
        assert_eq!(slots.admit(), Some(0));
        assert_eq!(slots.admit(), Some(1));
    }
}
