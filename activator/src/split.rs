//! The traffic split of one component: KServe's `canaryTrafficPercent` turned into targets,
//! and the pure pick of a target from a roll in `0..100`.

use crate::routes::{RevisionSettings, TrafficTarget};

/// The tag of the latest ready revision under KServe's tag routing.
pub(crate) const LATEST: &str = "latest";
/// The tag of the previous ready revision.
pub(crate) const PREV: &str = "prev";

/// KServe's rule: with `canaryTrafficPercent` p the latest ready revision takes p% and the
/// previous one the rest; without it (or without a previous revision) the latest takes all.
/// Both stay addressable by tag (`latest`, `prev`), the previous one even at 0%.
pub(crate) fn canary(
    latest: RevisionSettings,
    previous: Option<RevisionSettings>,
    canary_percent: Option<u32>,
) -> Vec<TrafficTarget> {
    let Some(previous) = previous.filter(|p| p.name != latest.name) else {
        return vec![TrafficTarget::new(latest, 100).tagged(LATEST)];
    };
    let percent = canary_percent.unwrap_or(100).min(100);
    vec![
        TrafficTarget::new(latest, percent).tagged(LATEST),
        TrafficTarget::new(previous, 100 - percent).tagged(PREV),
    ]
}

/// The target a roll in `0..100` lands on; `None` when nothing takes traffic.
pub(crate) fn pick<T>(targets: &[T], percent: impl Fn(&T) -> u32, roll: u32) -> Option<&T> {
    let mut upto = 0u32;
    for target in targets {
        upto = upto.saturating_add(percent(target));
        if roll < upto {
            return Some(target);
        }
    }
    // Rounding in the table: the last target that takes traffic at all.
    targets.iter().rev().find(|t| percent(t) > 0)
}

/// Traffic percentages must add up to 100 (or the component has no target yet).
pub(crate) fn check(targets: &[TrafficTarget]) -> Result<(), String> {
    let total: u32 = targets.iter().map(|t| t.percent).sum();
    if !targets.is_empty() && total != 100 {
        return Err(format!("traffic percentages add up to {total}, not 100"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str) -> RevisionSettings {
        RevisionSettings::new(name)
    }

    fn names(targets: &[TrafficTarget]) -> Vec<(&str, u32, Option<&str>)> {
        targets
            .iter()
            .map(|t| (t.revision.name.as_str(), t.percent, t.tag.as_deref()))
            .collect()
    }

    #[test]
    fn canary_follows_kserve() {
        let split = canary(rev("r2"), Some(rev("r1")), Some(20));
        assert_eq!(
            names(&split),
            [("r2", 20, Some("latest")), ("r1", 80, Some("prev"))]
        );
        // Promoted (no canary percent): all to latest, previous still addressable.
        let promoted = canary(rev("r2"), Some(rev("r1")), None);
        assert_eq!(
            names(&promoted),
            [("r2", 100, Some("latest")), ("r1", 0, Some("prev"))]
        );
        let first = canary(rev("r1"), None, Some(20));
        assert_eq!(names(&first), [("r1", 100, Some("latest"))]);
        assert!(check(&split).is_ok());
    }

    #[test]
    fn rolls_land_by_cumulative_percent() {
        let split = canary(rev("new"), Some(rev("old")), Some(20));
        let at = |roll| {
            pick(&split, |t| t.percent, roll)
                .unwrap()
                .revision
                .name
                .clone()
        };
        assert_eq!(at(0), "new");
        assert_eq!(at(19), "new");
        assert_eq!(at(20), "old");
        assert_eq!(at(99), "old");
        let hits = (0..100).filter(|&r| at(r) == "new").count();
        assert_eq!(hits, 20);
        // Zero-percent targets never take split traffic.
        let promoted = canary(rev("new"), Some(rev("old")), None);
        assert!((0..100).all(|r| pick(&promoted, |t| t.percent, r).unwrap().revision.name == "new"));
        assert!(pick(&[] as &[TrafficTarget], |t| t.percent, 5).is_none());
    }

    #[test]
    fn percentages_must_add_up() {
        let bad = vec![
            TrafficTarget::new(rev("a"), 50),
            TrafficTarget::new(rev("b"), 30),
        ];
        assert!(check(&bad).unwrap_err().contains("80"));
    }
}
