//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: a replica takes
//! the Lease when it is free or its holder stopped renewing it, renews it while it leads, and
//! stops leading as soon as a renewal fails past the lease duration. Writes carry the
//! Lease's resourceVersion, so two replicas can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

/// The Lease's name in the system namespace.
pub const LEASE_NAME: &str = "serval-controller";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub(crate) struct LeaseSettings {
    namespace: String,
    identity: String,
}

impl LeaseSettings {
    pub(crate) fn new(namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            identity: identity.to_string(),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renewed) = &spec.renew_time else {
        return true;
    };
    let duration = spec
        .lease_duration_seconds
        .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
    let age = Timestamp::now().duration_since(renewed.0);
    age.as_secs_f64() > duration.as_secs_f64()
}

fn held_by(lease: &Lease, identity: &str) -> bool {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(identity)
}

/// One attempt: `Ok(true)` when this replica holds the Lease afterwards.
async fn try_acquire(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let spec = |transitions: i32| LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: Some(now()),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(LEASE_NAME).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_string()),
                    namespace: Some(settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec(0)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let mine = held_by(&lease, &settings.identity);
            if !mine && !expired(&lease) {
                return Ok(false);
            }
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0);
            let mut next = spec(if mine { transitions } else { transitions + 1 });
            if mine {
                next.acquire_time = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
            }
            lease.spec = Some(next);
            // Carries the resourceVersion read above: a concurrent writer makes this a 409.
            match api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica leads.
pub(crate) async fn acquire(client: &Client, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut waiting_logged = false;
    loop {
        match try_acquire(&api, settings).await {
            Ok(true) => {
                tracing::info!(identity = %settings.identity, lease = LEASE_NAME, "leading");
                return Ok(());
            }
            Ok(false) if !waiting_logged => {
                tracing::info!(identity = %settings.identity, "another replica leads; standing by");
                waiting_logged = true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reading the leader Lease"),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Renews the Lease while this replica leads; returns when leadership is lost.
pub(crate) async fn keep(client: Client, settings: LeaseSettings) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match try_acquire(&api, &settings).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(identity = %settings.identity, "another replica took the Lease");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the leader Lease");
                if last_renewed.elapsed() > LEASE_DURATION {
                    tracing::error!("could not renew the Lease within its duration");
                    return;
                }
            }
        }
    }
}
