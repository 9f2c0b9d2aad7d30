//! The controller's Prometheus metrics and the instrumentation every reconcile runs in.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use hubspot::metrics::CallMetrics;

use crate::{Context, Error, UNHEALTHY_REQUEUE};

/// One object of ours.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

impl ObjectLabels {
    pub(crate) fn of(object: &impl Resource) -> ObjectLabels {
        ObjectLabels { namespace: object.namespace().unwrap_or_default(), name: object.name_any() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Metrics of the controller process, named as controller-runtime names them so that
/// dashboards and alerts written for Go operators work unchanged.
pub struct ControllerMetrics {
    registry: Registry,
    /// Finished reconciles by controller and result (`success`, `error`, `requeue`).
    pub reconcile_total: Family<ResultLabels, Counter>,
    /// Failed reconciles by controller.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// Reconcile duration by controller.
    pub reconcile_time: HistogramFamily,
    /// Reconciles in flight by controller (see [`instrumented`]).
    pub active_workers: Family<ControllerLabels, Gauge>,
    /// The most reconciles each controller runs at once.
    pub max_concurrent_reconciles: Family<ControllerLabels, Gauge>,
    /// 1 while this replica holds the leader Lease `name`, else 0 (leader election only).
    pub leader: Family<NameLabels, Gauge>,
    /// HubSpot API calls of the reconcilers.
    pub hubspot: Arc<CallMetrics>,
    /// When each `HubSpotProperty` was last read from HubSpot (Unix seconds): the heartbeat of
    /// the drift checks, which does not go into the object's status.
    pub property_last_sync: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_time: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 15)));
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        let max_concurrent_reconciles = Family::<ControllerLabels, Gauge>::default();
        let leader = Family::<NameLabels, Gauge>::default();
        let hubspot = Arc::new(CallMetrics::default());
        let property_last_sync = Family::<ObjectLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent_reconciles.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the leader Lease, else 0",
            leader.clone(),
        );
        let prefixed = registry.sub_registry_with_prefix("hubspot_operator");
        hubspot.register(prefixed);
        prefixed.register(
            "property_last_sync_timestamp_seconds",
            "When each HubSpotProperty was last read from HubSpot, as Unix time",
            property_last_sync.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            max_concurrent_reconciles,
            leader,
            hubspot,
            property_last_sync,
        }
    }
}

impl ControllerMetrics {
    /// Records a finished reconcile of `controller`.
    pub(crate) fn observe(&self, controller: &str, outcome: &Result<Action, Error>, took: Duration) {
        let labels = ControllerLabels { controller: controller.into() };
        let result = reconcile_result(outcome);
        if outcome.is_err() {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_total
            .get_or_create(&ResultLabels { controller: controller.into(), result: result.into() })
            .inc();
        self.reconcile_time.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The `result` of a reconcile, as metrics and traces report it.
fn reconcile_result(outcome: &Result<Action, Error>) -> &'static str {
    match outcome {
        Err(_) => "error",
        // Not ready yet: visited again soon rather than at the periodic check.
        Ok(action) if *action == Action::requeue(UNHEALTHY_REQUEUE) => "requeue",
        Ok(_) => "success",
    }
}

/// The controller label of kind `K`: its lowercase kind, as controller-runtime names controllers.
pub(crate) fn controller_name<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_lowercase()
}

/// Counts a reconcile in flight while it lives, also when it is cancelled.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `reconcile` with the controller-runtime metrics: result, errors, duration and the
/// reconciles in flight (`active_workers`, at most the controller's concurrency). The objects
/// due and waiting for a worker are not counted: kube-runtime keeps its scheduling queue
/// private, so there is no `workqueue_depth`. Each reconcile is a `reconcile` span (exported as
/// a trace when trace export is on) with the controller, the object and the result.
pub fn instrumented<K, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |object, ctx| {
        let controller = controller_name::<K>();
        let span = tracing::debug_span!(
            "reconcile",
            controller = %controller,
            namespace = object.namespace(),
            name = %object.name_any(),
            result = tracing::field::Empty,
            error = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        async move {
            let workers =
                ctx.metrics.active_workers.get_or_create(&ControllerLabels { controller: controller.clone() }).clone();
            workers.inc();
            let in_flight = InFlight(workers);
            let started = std::time::Instant::now();
            let outcome = reconcile(object, ctx.clone()).await;
            drop(in_flight);
            ctx.metrics.observe(&controller, &outcome, started.elapsed());
            let span = tracing::Span::current();
            span.record("result", reconcile_result(&outcome));
            if let Err(e) = &outcome {
                span.record("error", tracing::field::display(e));
                span.record("otel.status_code", "error");
            }
            outcome
        }
        .instrument(span)
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;
    use std::sync::Mutex;

    use super::*;
    use crate::fixtures::{self, sample};
    use crate::{HEALTHY_REQUEUE, mapping};

    static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

    /// A reconcile that finishes, settled, once [`RELEASE`] is notified.
    async fn held_reconcile(_: Arc<model::api::PropertyMapping>, _: Arc<Context>) -> Result<Action, Error> {
        RELEASE.notified().await;
        Ok(Action::requeue(HEALTHY_REQUEUE))
    }

    /// A span's name and its fields as they were when it closed.
    type ClosedSpan = (&'static str, BTreeMap<String, String>);

    /// Keeps every span that closes while it is the thread's subscriber.
    #[derive(Clone, Default)]
    struct ClosedSpans(Arc<Mutex<Vec<ClosedSpan>>>);

    struct SpanFields(BTreeMap<String, String>);

    impl tracing::field::Visit for SpanFields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
            self.0.insert(field.name().to_string(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
    }

    impl<S> tracing_subscriber::Layer<S> for ClosedSpans
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut fields = SpanFields(BTreeMap::new());
            attrs.record(&mut fields);
            ctx.span(id).unwrap().extensions_mut().insert(fields);
        }

        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(ctx.span(id).unwrap().extensions_mut().get_mut::<SpanFields>().unwrap());
        }

        fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
            let span = ctx.span(&id).unwrap();
            let fields = span.extensions_mut().remove::<SpanFields>().unwrap().0;
            self.0.lock().unwrap().push((span.name(), fields));
        }
    }

    #[tokio::test]
    async fn reconciles_are_counted_by_result_timed_and_in_flight_ones_are_the_active_workers() {
        use tracing_subscriber::layer::SubscriberExt;
        let spans = ClosedSpans::default();
        let _spans = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        let (ctx, api) = fixtures::test_context();
        fixtures::given_integrations(&ctx, []);
        let mapping = Arc::new(fixtures::mapping("crm", &["firstname"]));
        const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts/status";
        let object = fixtures::to_json(mapping.as_ref());
        let mut reconcile = instrumented(mapping::reconcile);
        let reconciles = async {
            // The integration does not exist: not ready, visited again soon.
            let requeued = reconcile(mapping.clone(), ctx.clone()).await;
            // The API server fails the status write.
            let failed = reconcile(mapping.clone(), ctx.clone()).await;
            (requeued, failed)
        };
        let script = tokio::spawn(async move {
            let mut api = api;
            api.event("Warning", "IntegrationNotFound").await;
            api.merge_status(STATUS, object).await;
            api.event("Warning", "IntegrationNotFound").await;
            api.fail(http::Method::PATCH, STATUS, 500).await;
        });
        let (requeued, failed) = reconciles.await;
        script.await.expect("the scripted calls");
        assert_eq!(requeued.unwrap(), Action::requeue(UNHEALTHY_REQUEUE));
        assert!(failed.is_err());

        let mut held = instrumented(held_reconcile);
        let running = tokio::spawn(held(mapping.clone(), ctx.clone()));
        let workers = r#"controller_runtime_active_workers{controller="propertymapping"}"#;
        while sample(&ctx.metrics.encode(), workers) != Some(1.0) {
            tokio::task::yield_now().await;
        }
        RELEASE.notify_one();
        assert_eq!(running.await.unwrap().unwrap(), Action::requeue(HEALTHY_REQUEUE));

        let metrics = ctx.metrics.encode();
        let result = |r: &str| {
            sample(
                &metrics,
                &format!(r#"controller_runtime_reconcile_total{{controller="propertymapping",result="{r}"}}"#),
            )
        };
        assert_eq!(
            (result("success"), result("requeue"), result("error")),
            (Some(1.0), Some(1.0), Some(1.0)),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, r#"controller_runtime_reconcile_errors_total{controller="propertymapping"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, r#"controller_runtime_reconcile_time_seconds_count{controller="propertymapping"}"#),
            Some(3.0)
        );
        assert_eq!(sample(&metrics, workers), Some(0.0));

        // Each reconcile is a span with the object and the result; the failed one with its error.
        let reconciles: Vec<BTreeMap<String, String>> =
            spans.0.lock().unwrap().iter().filter(|(name, _)| *name == "reconcile").map(|(_, f)| f.clone()).collect();
        let field = |span: &BTreeMap<String, String>, key: &str| span.get(key).cloned().unwrap_or_default();
        let results: Vec<String> = reconciles.iter().map(|span| field(span, "result")).collect();
        assert_eq!(results, ["requeue", "error", "success"], "{reconciles:?}");
        for span in &reconciles {
            assert_eq!(
                (field(span, "controller"), field(span, "namespace"), field(span, "name")),
                ("propertymapping".into(), "default".into(), "contacts".into())
            );
        }
        assert_eq!(field(&reconciles[1], "otel.status_code"), "error");
        assert!(!field(&reconciles[1], "error").is_empty());
        assert!(!reconciles[0].contains_key("error"));
    }

    #[tokio::test]
    async fn hubspot_calls_of_the_reconcilers_are_counted() {
        let hubspot = fixtures::hubspot(&[("pat-na1-1", &["oauth"])]).await;
        let (ctx, _api) = fixtures::test_context();
        let integration = fixtures::integration(&hubspot.base_url(), &[]);
        ctx.hubspot_client(&integration, "pat-na1-1".into()).introspect_token().await.unwrap();
        let metrics = ctx.metrics.encode();
        assert!(metrics.contains("hubspot_operator_hubspot_requests_total{"), "{metrics}");
        assert!(metrics.contains("hubspot_operator_hubspot_request_duration_seconds_count 1"), "{metrics}");
    }
}
