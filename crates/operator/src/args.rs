//! Command-line options of `hubspot-operator controller`, leader election included.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{DEFAULT_MAX_CONCURRENT_RECONCILES, DEFAULT_RECEIVER_IMAGE, leader};

/// Options of `hubspot-operator controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Image of the receiver pods of integrations that do not set spec.receiver.image.
    #[arg(long, env = "RECEIVER_IMAGE", default_value = DEFAULT_RECEIVER_IMAGE)]
    pub receiver_image: String,
    /// Watch only this namespace; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,
    /// Reconcile only while holding a coordination.k8s.io Lease, so that of several replicas
    /// exactly one is active and the others stand by.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEADER_ELECT_LEASE_NAME", default_value = "hubspot-operator")]
    pub leader_elect_lease_name: String,
    /// Namespace of the leader Lease; the controller's own namespace when unset.
    #[arg(long, env = "LEADER_ELECT_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,
    /// Seconds a leader that stops renewing keeps the Lease from the other replicas.
    #[arg(long, env = "LEADER_ELECT_LEASE_DURATION", default_value_t = 15, value_name = "SECONDS")]
    pub leader_elect_lease_duration: u64,
    /// Seconds the leader keeps trying to renew before it stops reconciling and exits.
    #[arg(long, env = "LEADER_ELECT_RENEW_DEADLINE", default_value_t = 10, value_name = "SECONDS")]
    pub leader_elect_renew_deadline: u64,
    /// Seconds between two attempts to acquire or renew the Lease.
    #[arg(long, env = "LEADER_ELECT_RETRY_PERIOD", default_value_t = 2, value_name = "SECONDS")]
    pub leader_elect_retry_period: u64,
    /// Reconciles each controller runs at once (at least 1); objects due meanwhile wait their
    /// turn.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
}

impl ControllerArgs {
    /// The leader Lease settings when leader election is on. The identity is the pod name
    /// (`POD_NAME`, else `HOSTNAME`) with a random suffix, unique across restarts.
    pub fn lease_settings(&self, default_namespace: &str) -> Result<Option<leader::LeaseSettings>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        let pod =
            std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "controller".into());
        let settings = leader::LeaseSettings {
            name: self.leader_elect_lease_name.clone(),
            namespace: self.leader_elect_namespace.clone().unwrap_or_else(|| default_namespace.to_string()),
            identity: format!("{pod}_{:08x}", rand::random::<u32>()),
            lease_duration: Duration::from_secs(self.leader_elect_lease_duration),
            renew_deadline: Duration::from_secs(self.leader_elect_renew_deadline),
            retry_period: Duration::from_secs(self.leader_elect_retry_period),
        };
        settings.validate()?;
        Ok(Some(settings))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use model::api::PropertyMapping;

    use super::*;
    use crate::fixtures::{self, sample};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    #[test]
    fn leader_election_flags_become_lease_settings() {
        use clap::Parser;
        let off = Cli::try_parse_from(["controller"]).unwrap();
        assert_eq!(off.args.lease_settings("hubspot-system"), Ok(None));
        let on = Cli::try_parse_from([
            "controller",
            "--leader-elect",
            "--leader-elect-lease-name=crm-operator",
            "--leader-elect-lease-duration=30",
            "--leader-elect-renew-deadline=20",
            "--leader-elect-retry-period=4",
        ])
        .unwrap();
        let settings = on.args.lease_settings("hubspot-system").unwrap().expect("leader election on");
        assert_eq!(
            (settings.name.as_str(), settings.namespace.as_str()),
            ("crm-operator", "hubspot-system"),
            "the Lease lives in the controller's own namespace unless told otherwise"
        );
        assert_eq!(
            (settings.lease_duration, settings.renew_deadline, settings.retry_period),
            (Duration::from_secs(30), Duration::from_secs(20), Duration::from_secs(4))
        );
        let (_, suffix) = settings.identity.rsplit_once('_').expect("pod name and random suffix");
        assert!(suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{}", settings.identity);
        let bad = Cli::try_parse_from(["controller", "--leader-elect", "--leader-elect-renew-deadline=20"]).unwrap();
        assert!(bad.args.lease_settings("ns").unwrap_err().contains("longer than the renew deadline"));
    }

    #[tokio::test]
    async fn concurrency_is_a_flag_with_a_default_and_is_published() {
        use clap::Parser;
        let default = Cli::try_parse_from(["controller"]).unwrap();
        assert_eq!(default.args.max_concurrent_reconciles, DEFAULT_MAX_CONCURRENT_RECONCILES);
        let set = Cli::try_parse_from(["controller", "--max-concurrent-reconciles=3"]).unwrap();
        assert_eq!(set.args.max_concurrent_reconciles, 3);
        assert!(
            Cli::try_parse_from(["controller", "--max-concurrent-reconciles=0"]).is_err(),
            "0 is no limit in kube-runtime"
        );

        let (ctx, _api) = fixtures::test_context();
        ctx.controller_config::<PropertyMapping>();
        let metrics = ctx.metrics.encode();
        assert_eq!(
            sample(&metrics, r#"controller_runtime_max_concurrent_reconciles{controller="propertymapping"}"#),
            Some(f64::from(DEFAULT_MAX_CONCURRENT_RECONCILES)),
            "{metrics}"
        );
    }
}
