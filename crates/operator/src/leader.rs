//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it: the holder
//! renews the lease every retry period; another replica takes it over only once it has seen
//! the same holder and renew time unchanged for a whole lease duration (measured on its own
//! clock, so clock skew between nodes does not matter). Every write carries the
//! `resourceVersion` that was read, so of two replicas racing for the lease one gets a conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

/// Name, place and timing of the lease.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Who this replica is: unique among the replicas (pod name and a random suffix).
    pub identity: String,
    /// How long a holder that stops renewing keeps the lease from the others.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// The holder must give up (renew deadline) before the others may take over (lease
    /// duration), and must try several times within its deadline.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("the lease duration must be longer than the renew deadline".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err("the renew deadline must be longer than the retry period".into());
        }
        if self.retry_period.is_zero() {
            return Err("the retry period must be positive".into());
        }
        Ok(())
    }
}

/// How holding the lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// Asked to stop; the lease is still ours until released.
    Stopped,
    /// Another replica holds the lease, or renewing failed for longer than the renew deadline.
    Lost,
}

/// The holder and renew time last seen, and when (on this replica's clock) they changed.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// One replica's view of the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self { api, settings, observed: None }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// One attempt at `now`: creates the lease when there is none, renews it when it is ours,
    /// takes it over when its holder let it expire. Whether this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..Default::default() },
                spec: Some(self.acquired_spec(0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renewed_elsewhere = self.observe(holder.clone(), spec.renew_time.clone(), now);
        let mine = holder.as_deref() == Some(self.settings.identity.as_str());
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let expired = renewed_elsewhere.is_none_or(|since| since + duration <= now);
        if holder.is_some() && !mine && !expired {
            return Ok(false);
        }
        let new_spec = if mine {
            LeaseSpec {
                renew_time: Some(now_micro()),
                lease_duration_seconds: Some(self.settings.lease_duration.as_secs() as i32),
                ..spec
            }
        } else {
            self.acquired_spec(spec.lease_transitions.unwrap_or(0) + 1)
        };
        let lease = Lease { metadata: lease.metadata, spec: Some(new_spec) };
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Someone wrote the lease since it was read: they won this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records what the lease says; returns when its holder last renewed, by this replica's
    /// clock, or `None` when no one holds it.
    fn observe(&mut self, holder: Option<String>, renew_time: Option<MicroTime>, now: Instant) -> Option<Instant> {
        holder.as_ref()?;
        match &self.observed {
            Some(seen) if seen.holder == holder && seen.renew_time == renew_time => {}
            _ => self.observed = Some(Observed { holder, renew_time, since: now }),
        }
        self.observed.as_ref().map(|seen| seen.since)
    }

    /// Whether the lease, as last read, names another holder.
    fn held_by_another(&self) -> bool {
        self.observed
            .as_ref()
            .and_then(|seen| seen.holder.as_deref())
            .is_some_and(|holder| holder != self.settings.identity)
    }

    /// The lease spec of a fresh acquisition by this replica.
    fn acquired_spec(&self, transitions: i32) -> LeaseSpec {
        let now = now_micro();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Tries every retry period until this replica holds the lease (`true`) or `stop`
    /// resolves first (`false`).
    pub async fn acquire(&mut self, stop: impl Future<Output = ()>) -> bool {
        let mut stop = std::pin::pin!(stop);
        loop {
            match self.try_acquire_or_renew(Instant::now()).await {
                Ok(true) => {
                    tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, "acquired the leader lease");
                    return true;
                }
                Ok(false) => {
                    tracing::debug!(lease = %self.settings.name, "the leader lease is held by another replica")
                }
                Err(e) => {
                    tracing::warn!(lease = %self.settings.name, error = %e, "could not read or write the leader lease")
                }
            }
            tokio::select! {
                () = &mut stop => return false,
                () = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
    }

    /// Renews the lease every retry period until `stop` resolves ([`HoldEnd::Stopped`]) or
    /// leadership is lost: another replica holds the lease, or no renewal succeeded within
    /// the renew deadline ([`HoldEnd::Lost`]).
    pub async fn hold(&mut self, stop: impl Future<Output = ()>) -> HoldEnd {
        let mut stop = std::pin::pin!(stop);
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                () = &mut stop => return HoldEnd::Stopped,
                () = tokio::time::sleep(self.settings.retry_period) => {}
            }
            let deadline = last_renewal + self.settings.renew_deadline;
            let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew(Instant::now())).await;
            match attempt {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) if self.held_by_another() => {
                    tracing::error!(lease = %self.settings.name, "another replica holds the leader lease");
                    return HoldEnd::Lost;
                }
                // A write conflict: someone wrote the lease between read and renewal; the next
                // attempt reads who holds it.
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.settings.name, "the leader lease changed while renewing it")
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.settings.name, error = %e, "could not renew the leader lease")
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                tracing::error!(lease = %self.settings.name, deadline_s = self.settings.renew_deadline.as_secs(), "could not renew the leader lease within the renew deadline");
                return HoldEnd::Lost;
            }
        }
    }

    /// Gives the lease up so another replica can take over at once: clears the holder when it
    /// is still this replica.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else { return Ok(()) };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: None,
            renew_time: Some(now_micro()),
            lease_transitions: spec.lease_transitions,
            ..Default::default()
        };
        let lease = Lease { metadata: lease.metadata, spec: Some(released) };
        self.api.replace(&self.settings.name, &PostParams::default(), &lease).await?;
        tracing::info!(lease = %self.settings.name, "released the leader lease");
        Ok(())
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{ApiServer, run_scenario, test_context};

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/hubspot-system/leases";
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/hubspot-system/leases/hubspot-operator";
    const ME: &str = "controller-0_0000002a";
    const OTHER: &str = "controller-1_00000063";

    fn elector() -> (LeaderElector, ApiServer) {
        let (ctx, api) = test_context();
        let settings = LeaseSettings {
            name: "hubspot-operator".into(),
            namespace: "hubspot-system".into(),
            identity: ME.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        (LeaderElector::new(ctx.client.clone(), settings), api)
    }

    /// The lease as the API server stores it, held by `holder` and renewed at `renewed`.
    fn lease(holder: Option<&str>, renewed: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "hubspot-operator", "namespace": "hubspot-system", "resourceVersion": "41" },
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:00:00.000000Z",
                "renewTime": renewed, "leaseTransitions": transitions
            }
        })
    }

    #[tokio::test]
    async fn creates_the_lease_when_there_is_none() {
        let (mut elector, api) = elector();
        let held = run_scenario(
            api,
            async move { elector.try_acquire_or_renew(Instant::now()).await },
            |mut api| async move {
                api.get(LEASE, None).await;
                let created = api.create(LEASES).await;
                assert_eq!(created["metadata"]["name"], "hubspot-operator");
                assert_eq!(created["spec"]["holderIdentity"], ME);
                assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(created["spec"]["leaseTransitions"], 0);
                assert_eq!(created["spec"]["acquireTime"], created["spec"]["renewTime"]);
                api
            },
        )
        .await
        .expect("no API error");
        assert!(held);
    }

    #[tokio::test]
    async fn loses_the_race_to_create_it() {
        let (mut elector, api) = elector();
        let held = run_scenario(
            api,
            async move { elector.try_acquire_or_renew(Instant::now()).await },
            |mut api| async move {
                api.get(LEASE, None).await;
                api.fail(Method::POST, LEASES, 409).await;
                api
            },
        )
        .await
        .expect("a conflict is not an error");
        assert!(!held);
    }

    #[tokio::test]
    async fn renews_its_own_lease_keeping_acquisition_and_transitions() {
        let (mut elector, api) = elector();
        let held = run_scenario(
            api,
            async move { elector.try_acquire_or_renew(Instant::now()).await },
            |mut api| async move {
                api.get(LEASE, Some(lease(Some(ME), "2026-01-01T00:00:00.000000Z", 3))).await;
                let renewed = api.replace(LEASE).await;
                assert_eq!(renewed["metadata"]["resourceVersion"], "41", "optimistic concurrency");
                assert_eq!(renewed["spec"]["holderIdentity"], ME);
                assert_eq!(renewed["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                assert_eq!(renewed["spec"]["leaseTransitions"], 3);
                assert_ne!(renewed["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
                api
            },
        )
        .await
        .expect("no API error");
        assert!(held);
    }

    #[tokio::test]
    async fn does_not_take_a_lease_another_replica_holds() {
        let (mut elector, api) = elector();
        let start = Instant::now();
        let attempts = async move {
            let first = elector.try_acquire_or_renew(start).await?;
            // Renewed by its holder in between: still held, however long this replica has waited.
            let second = elector.try_acquire_or_renew(start + Duration::from_secs(14)).await?;
            let third = elector.try_acquire_or_renew(start + Duration::from_secs(28)).await?;
            Ok::<_, kube::Error>([first, second, third])
        };
        let held = run_scenario(api, attempts, |mut api| async move {
            api.get(LEASE, Some(lease(Some(OTHER), "2026-01-01T00:00:00.000000Z", 1))).await;
            api.get(LEASE, Some(lease(Some(OTHER), "2026-01-01T00:00:00.000000Z", 1))).await;
            api.get(LEASE, Some(lease(Some(OTHER), "2026-01-01T00:00:14.000000Z", 1))).await;
            api
        })
        .await
        .expect("no API error");
        assert_eq!(held, [false, false, false]);
    }

    #[tokio::test]
    async fn takes_over_a_lease_its_holder_stopped_renewing() {
        let (mut elector, api) = elector();
        let start = Instant::now();
        let attempts = async move {
            let first = elector.try_acquire_or_renew(start).await?;
            let second = elector.try_acquire_or_renew(start + Duration::from_secs(15)).await?;
            Ok::<_, kube::Error>([first, second])
        };
        let held = run_scenario(api, attempts, |mut api| async move {
            let stale = lease(Some(OTHER), "2026-01-01T00:00:00.000000Z", 1);
            api.get(LEASE, Some(stale.clone())).await;
            api.get(LEASE, Some(stale)).await;
            let taken = api.replace(LEASE).await;
            assert_eq!(taken["metadata"]["resourceVersion"], "41", "optimistic concurrency");
            assert_eq!(taken["spec"]["holderIdentity"], ME);
            assert_eq!(taken["spec"]["leaseTransitions"], 2);
            assert_ne!(taken["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
            api
        })
        .await
        .expect("no API error");
        assert_eq!(held, [false, true]);
    }

    #[tokio::test]
    async fn takes_a_released_lease_at_once_unless_another_replica_writes_first() {
        let (mut elector, api) = elector();
        let attempts = async move {
            let first = elector.try_acquire_or_renew(Instant::now()).await?;
            let second = elector.try_acquire_or_renew(Instant::now()).await?;
            Ok::<_, kube::Error>([first, second])
        };
        let held = run_scenario(api, attempts, |mut api| async move {
            api.get(LEASE, Some(lease(None, "2026-01-01T00:00:00.000000Z", 1))).await;
            api.fail(Method::PUT, LEASE, 409).await;
            api.get(LEASE, Some(lease(None, "2026-01-01T00:00:00.000000Z", 1))).await;
            let taken = api.replace(LEASE).await;
            assert_eq!(taken["spec"]["holderIdentity"], ME);
            api
        })
        .await
        .expect("no API error");
        assert_eq!(held, [false, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn holding_ends_when_another_replica_holds_the_lease() {
        let (mut elector, api) = elector();
        let end = run_scenario(api, async move { elector.hold(std::future::pending()).await }, |mut api| async move {
            api.get(LEASE, Some(lease(Some(ME), "2026-01-01T00:00:00.000000Z", 1))).await;
            api.replace(LEASE).await;
            api.get(LEASE, Some(lease(Some(OTHER), "2026-01-01T00:00:02.000000Z", 2))).await;
            api
        })
        .await;
        assert_eq!(end, HoldEnd::Lost);
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflicting_renewal_is_retried_and_holding_goes_on() {
        let (mut elector, api) = elector();
        let stop = tokio::sync::oneshot::channel::<()>();
        let (stop_tx, stop_rx) = stop;
        let holding = async move {
            elector
                .hold(async {
                    let _ = stop_rx.await;
                })
                .await
        };
        let end = run_scenario(api, holding, |mut api| async move {
            api.get(LEASE, Some(lease(Some(ME), "2026-01-01T00:00:00.000000Z", 1))).await;
            api.fail(Method::PUT, LEASE, 409).await;
            api.get(LEASE, Some(lease(Some(ME), "2026-01-01T00:00:01.000000Z", 1))).await;
            api.replace(LEASE).await;
            stop_tx.send(()).unwrap();
            api
        })
        .await;
        assert_eq!(end, HoldEnd::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn holding_ends_when_renewals_fail_past_the_deadline() {
        let (mut elector, mut api) = elector();
        let server = tokio::spawn(async move {
            let mut failures = 0;
            while let Some(()) = api.fail_any(500).await {
                failures += 1;
            }
            failures
        });
        assert_eq!(elector.hold(std::future::pending()).await, HoldEnd::Lost);
        drop(elector);
        let failures = server.await.unwrap();
        // Tried every retry period within the deadline, not once only.
        assert!(failures >= 4, "{failures} attempts");
    }

    #[tokio::test]
    async fn release_clears_the_holder_only_when_it_is_this_replica() {
        let (mut elector, api) = elector();
        let releases = async move {
            elector.release().await?;
            elector.release().await
        };
        run_scenario(api, releases, |mut api| async move {
            api.get(LEASE, Some(lease(Some(ME), "2026-01-01T00:00:00.000000Z", 4))).await;
            let released = api.replace(LEASE).await;
            assert_eq!(released["metadata"]["resourceVersion"], "41");
            assert_eq!(released["spec"].get("holderIdentity"), None);
            assert_eq!(released["spec"]["leaseDurationSeconds"], 1);
            assert_eq!(released["spec"]["leaseTransitions"], 4);
            // Someone else holds it by now: nothing to release.
            api.get(LEASE, Some(lease(Some(OTHER), "2026-01-01T00:00:00.000000Z", 5))).await;
            api
        })
        .await
        .expect("no API error");
    }

    #[tokio::test]
    async fn settings_must_let_the_holder_give_up_before_others_take_over() {
        let settings = elector().0.settings().clone();
        assert_eq!(settings.validate(), Ok(()));
        let too_long = LeaseSettings { renew_deadline: Duration::from_secs(15), ..settings.clone() };
        assert!(too_long.validate().unwrap_err().contains("longer than the renew deadline"));
        let too_often = LeaseSettings { retry_period: Duration::from_secs(10), ..settings };
        assert!(too_often.validate().unwrap_err().contains("longer than the retry period"));
    }
}
