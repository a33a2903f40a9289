//! The activator reaches `serval dev`'s autoscaler in the same process: its pokes and
//! reports are calls, not HTTP. Wired here, in the binary, so the activator library does
//! not depend on the autoscaler.

use std::sync::Arc;

use serval_activator::{AutoscalerClient, AutoscalerClientError};
use serval_api::Stat;
use serval_autoscaler::live::{Autoscaler, Scaler};

/// The autoscaler in the same process.
#[derive(Debug)]
pub(crate) struct InProcessAutoscaler<S> {
    autoscaler: Arc<Autoscaler<S>>,
}

impl<S: Scaler> InProcessAutoscaler<S> {
    pub(crate) fn new(autoscaler: Arc<Autoscaler<S>>) -> Self {
        Self { autoscaler }
    }
}

impl<S: Scaler> AutoscalerClient for InProcessAutoscaler<S> {
    async fn poke(&self, revision: &str) -> Result<(), AutoscalerClientError> {
        self.autoscaler
            .poke(revision)
            .then_some(())
            .ok_or_else(|| AutoscalerClientError::UnknownRevision(revision.to_string()))
    }

    async fn report(
        &self,
        revision: &str,
        stat: Stat,
        queued: u32,
    ) -> Result<(), AutoscalerClientError> {
        self.autoscaler
            .report_from_activator(revision, stat, queued)
            .then_some(())
            .ok_or_else(|| AutoscalerClientError::UnknownRevision(revision.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_autoscaler::live::RecordingScaler;
    use serval_autoscaler::{AutoscalerConfig, ScalingSpec};

    #[tokio::test]
    async fn pokes_and_reports_reach_the_autoscaler_and_unknown_revisions_are_refused() {
        let autoscaler = Autoscaler::new(AutoscalerConfig::default(), RecordingScaler::default());
        let client = InProcessAutoscaler::new(autoscaler.clone());
        assert!(matches!(
            client.poke("nope").await,
            Err(AutoscalerClientError::UnknownRevision(_))
        ));
        let config = AutoscalerConfig::default();
        let component = serval_api::component::ComponentExtensionSpec::default();
        let spec =
            ScalingSpec::from_annotations(&component, &Default::default(), "metadata", &config)
                .expect("default spec");
        autoscaler.upsert_revision("r1", spec);
        client.poke("r1").await.unwrap();
        client.report("r1", Stat::default(), 3).await.unwrap();
    }
}
