//! The scale-down delay: the highest count wanted in the last `scale-down-delay`, kept in
//! 1 s buckets so memory stays bounded however often the decider runs.

use std::collections::VecDeque;
use std::time::Duration;

use crate::buckets::bucket_count;

#[derive(Debug, Clone)]
pub(crate) struct MaxWindow {
    len: u64,
    /// (second, highest value recorded in it), oldest first, only seconds with a record.
    entries: VecDeque<(u64, u32)>,
}

impl MaxWindow {
    pub(crate) fn new(delay: Duration) -> Self {
        Self {
            len: bucket_count(delay),
            entries: VecDeque::new(),
        }
    }

    /// Records `value` at `second` and returns the highest value of the window that ends
    /// there: a value stays in force for `delay` after it was last wanted.
    pub(crate) fn record(&mut self, second: u64, value: u32) -> u32 {
        match self.entries.back_mut() {
            Some((last, highest)) if *last == second => *highest = (*highest).max(value),
            Some((last, _)) if *last > second => {} // a late tick changes nothing already decided
            _ => self.entries.push_back((second, value)),
        }
        let oldest_kept = (second + 1).saturating_sub(self.len);
        while self.entries.front().is_some_and(|(s, _)| *s < oldest_kept) {
            self.entries.pop_front();
        }
        self.entries
            .iter()
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(value)
            .max(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_highest_value_for_the_delay() {
        let mut w = MaxWindow::new(Duration::from_secs(5));
        assert_eq!(w.record(0, 10), 10);
        assert_eq!(w.record(1, 2), 10);
        assert_eq!(w.record(4, 2), 10);
        assert_eq!(w.record(5, 2), 2);
        assert_eq!(w.record(6, 7), 7);
        assert!(w.entries.len() <= 5);
    }
}
