//! How a revision picks a pod, by Knative's rules: power of two choices on in-flight count
//! when pods take any number of requests (containerConcurrency 0), the first pod with a free
//! slot when they take very few (CC <= 3, where packing beats spreading), and round robin
//! over pods with a free slot otherwise. Pure: in-flight counts and the draw are inputs.

use crate::rng::Rng;

/// Up to this containerConcurrency, the first available pod is used.
const FIRST_AVAILABLE_MAX_CC: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    RandomChoiceOfTwo,
    FirstAvailable,
    RoundRobin,
}

impl Policy {
    pub(crate) fn for_concurrency(container_concurrency: usize) -> Self {
        match container_concurrency {
            0 => Self::RandomChoiceOfTwo,
            cc if cc <= FIRST_AVAILABLE_MAX_CC => Self::FirstAvailable,
            _ => Self::RoundRobin,
        }
    }

    /// The index of the pod to use, given each candidate's in-flight count and the per-pod
    /// capacity; `None` when every pod is full. `next` is the round-robin cursor.
    pub(crate) fn pick(
        self,
        in_flight: &[usize],
        capacity: usize,
        next: &mut usize,
        rng: &mut Rng,
    ) -> Option<usize> {
        let n = in_flight.len();
        let free = |i: usize| in_flight[i] < capacity;
        match self {
            _ if n == 0 => None,
            Self::RandomChoiceOfTwo if n == 1 => free(0).then_some(0),
            Self::RandomChoiceOfTwo => {
                let a = rng.below(n as u64) as usize;
                let mut b = rng.below(n as u64 - 1) as usize;
                if b >= a {
                    b += 1;
                }
                let (best, other) = if in_flight[b] < in_flight[a] {
                    (b, a)
                } else {
                    (a, b)
                };
                [best, other].into_iter().find(|&i| free(i))
            }
            Self::FirstAvailable => (0..n).find(|&i| free(i)),
            Self::RoundRobin => {
                let start = *next % n;
                let chosen = (0..n).map(|k| (start + k) % n).find(|&i| free(i))?;
                *next = chosen + 1;
                Some(chosen)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_follows_container_concurrency() {
        assert_eq!(Policy::for_concurrency(0), Policy::RandomChoiceOfTwo);
        assert_eq!(Policy::for_concurrency(1), Policy::FirstAvailable);
        assert_eq!(Policy::for_concurrency(3), Policy::FirstAvailable);
        assert_eq!(Policy::for_concurrency(4), Policy::RoundRobin);
    }

    #[test]
    fn two_choices_prefer_the_less_loaded_pod() {
        let mut rng = Rng::seeded(7);
        let mut next = 0;
        // With two pods both are always the candidates: the idle one wins every time.
        for _ in 0..100 {
            let pick = Policy::RandomChoiceOfTwo.pick(&[9, 2], usize::MAX, &mut next, &mut rng);
            assert_eq!(pick, Some(1));
        }
        // Among many, the most loaded pod is never picked (it loses every pairing).
        let loads = [5, 5, 5, 100, 5];
        let picks: Vec<_> = (0..1000)
            .map(|_| {
                Policy::RandomChoiceOfTwo
                    .pick(&loads, usize::MAX, &mut next, &mut rng)
                    .unwrap()
            })
            .collect();
        assert!(!picks.contains(&3));
        assert!((0..5).filter(|&i| i != 3).all(|i| picks.contains(&i)));
        assert_eq!(
            Policy::RandomChoiceOfTwo.pick(&[4], 4, &mut next, &mut rng),
            None
        );
    }

    #[test]
    fn first_available_packs_and_round_robin_spreads() {
        let mut rng = Rng::seeded(1);
        let mut next = 0;
        assert_eq!(
            Policy::FirstAvailable.pick(&[2, 0, 1], 2, &mut next, &mut rng),
            Some(1)
        );
        assert_eq!(
            Policy::FirstAvailable.pick(&[2, 2], 2, &mut next, &mut rng),
            None
        );

        let order: Vec<_> = (0..4)
            .map(|_| {
                Policy::RoundRobin
                    .pick(&[0, 0, 0], 8, &mut next, &mut rng)
                    .unwrap()
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 0]);
        // Full pods are skipped.
        assert_eq!(
            Policy::RoundRobin.pick(&[0, 8, 8], 8, &mut next, &mut rng),
            Some(0)
        );
        assert_eq!(
            Policy::RoundRobin.pick(&[8, 8, 8], 8, &mut next, &mut rng),
            None
        );
        assert_eq!(Policy::RoundRobin.pick(&[], 8, &mut next, &mut rng), None);
    }
}
