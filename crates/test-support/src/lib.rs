//! A fake Kubernetes API server for the operator's tests and benchmarks.
//!
//! A stand-in for the Kubernetes API server, served over HTTP, enough for the controllers to
//! run against: get, list and watch of namespaced objects of any group (label selectors of the
//! `key=value` form), server-side apply (create or merge; field ownership is not tracked),
//! deletes with a uid precondition, merge patches of the status subresource, JSON patches
//! (finalizers) and Event creation. Like the API server, it bumps an object's `resourceVersion`
//! and tells watchers only when a write changes the object, so a write that changes nothing
//! triggers no reconcile.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Watch events kept for watches that start from an older resourceVersion; older ones get
/// `410 Gone` and list again, as with a real API server.
const WATCH_HISTORY: usize = 4096;

/// Where [`FakeApiServer::serve`] answers the calls it answered so far.
pub const CALLS_PATH: &str = "/_stand-in/calls";

/// Calls the stand-in answered, by kind of call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiCalls {
    pub gets: u64,
    pub lists: u64,
    pub watches: u64,
    pub status_patches: u64,
    /// Status patches that changed the object (and so reached the watchers).
    pub status_changes: u64,
    pub other_patches: u64,
    pub events: u64,
    /// Calls it does not serve (answered 404 or 405).
    pub unexpected: u64,
    /// Server-side applies, whether or not they changed the object.
    #[serde(default)]
    pub applies: u64,
    #[serde(default)]
    pub deletes: u64,
}

impl ApiCalls {
    /// The calls made after `before` was taken.
    pub fn since(&self, before: &ApiCalls) -> ApiCalls {
        ApiCalls {
            gets: self.gets - before.gets,
            lists: self.lists - before.lists,
            watches: self.watches - before.watches,
            status_patches: self.status_patches - before.status_patches,
            status_changes: self.status_changes - before.status_changes,
            other_patches: self.other_patches - before.other_patches,
            events: self.events - before.events,
            unexpected: self.unexpected - before.unexpected,
            applies: self.applies - before.applies,
            deletes: self.deletes - before.deletes,
        }
    }

    /// Every call that writes: patches, applies, deletes and Events.
    pub fn writes(&self) -> u64 {
        self.status_patches + self.other_patches + self.applies + self.deletes + self.events
    }
}

#[derive(Default)]
struct Store {
    /// Objects by path (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`).
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    /// `(resourceVersion, collection path, object, event line)`, oldest first.
    history: VecDeque<(u64, String, Value, Bytes)>,
    /// Each watch: its collection, label selector and channel.
    watchers: Vec<(String, Selector, WatchSender)>,
    calls: ApiCalls,
    /// Published Events, oldest first.
    events: Vec<Value>,
    /// Plurals whose resource type the stand-in pretends not to know: every call on them is
    /// answered 404, as for a CRD that is not installed.
    missing_kinds: Vec<String>,
    /// Uids handed out to created objects.
    next_uid: u64,
}

/// The sending end of a watch's response body.
type WatchSender = mpsc::UnboundedSender<Result<Bytes, Infallible>>;

/// An equality-based label selector (`key=value` terms, as sent in a query, percent-encoded),
/// all of whose terms must hold; no selector selects everything. A term of another form
/// selects nothing.
#[derive(Clone, Debug, Default)]
struct Selector(Vec<String>);

impl Selector {
    fn parse(query: Option<&str>) -> Selector {
        let terms = query.map(percent_decoded).unwrap_or_default();
        Selector(terms.split(',').filter(|term| !term.is_empty()).map(str::to_string).collect())
    }

    fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|term| match term.split_once('=') {
            Some((key, value)) => object["metadata"]["labels"][key].as_str() == Some(value),
            None => false,
        })
    }
}

/// The stand-in; clones share the objects.
#[derive(Clone, Default)]
pub struct FakeApiServer(Arc<Mutex<Store>>);

impl FakeApiServer {
    /// Serves the Kubernetes API on `listener` over HTTP, with [`ApiCalls`] as JSON on
    /// [`CALLS_PATH`], until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let calls = self.clone();
        let router = axum::Router::new()
            .route(CALLS_PATH, axum::routing::get(move || async move { axum::Json(calls.calls()) }))
            .fallback(handle)
            .with_state(self);
        axum::serve(listener, router).await
    }

    /// Stores `object` (it needs `apiVersion`, `kind`, `metadata.name` and `metadata.namespace`)
    /// under `plural`, as a create would (with a uid unless it has one).
    pub fn insert(&self, plural: &str, mut object: Value) {
        let path = format!(
            "{}/namespaces/{}/{plural}/{}",
            api_prefix(object["apiVersion"].as_str().expect("apiVersion")),
            object["metadata"]["namespace"].as_str().expect("metadata.namespace"),
            object["metadata"]["name"].as_str().expect("metadata.name"),
        );
        let mut store = self.0.lock().expect("store lock");
        store.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(store.new_uid());
        }
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        store.changed(&path, "ADDED", object);
    }

    pub fn calls(&self) -> ApiCalls {
        self.0.lock().expect("store lock").calls
    }

    /// The object at `path` (`/api/v1/namespaces/default/secrets/x`), if it exists.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().expect("store lock").objects.get(path).cloned()
    }

    /// Sets the status of the object at `path`, as the object's own controller would (the
    /// StatefulSet controller, for instance). Panics when there is no such object.
    pub fn set_status(&self, path: &str, status: Value) {
        let mut store = self.0.lock().expect("store lock");
        let mut object = store.objects.get(path).cloned().unwrap_or_else(|| panic!("no object at {path}"));
        object["status"] = status;
        store.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        store.changed(path, "MODIFIED", object);
    }

    /// The Events published so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.0.lock().expect("store lock").events.clone()
    }

    /// Pretends the resource type of `plural` (say `httproutes`) is not installed.
    pub fn without_kind(&self, plural: &str) {
        self.0.lock().expect("store lock").missing_kinds.push(plural.to_string());
    }
}

impl Store {
    /// Stores `object` at `path` (its resourceVersion already set) and tells the watchers.
    fn changed(&mut self, path: &str, kind: &str, object: Value) {
        let collection = collection_of(path).to_string();
        let mut line = serde_json::to_vec(&json!({ "type": kind, "object": &object })).expect("JSON");
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watchers.retain(|(c, selector, tx)| {
            c != &collection || !selector.matches(&object) || tx.send(Ok(line.clone())).is_ok()
        });
        if self.history.len() == WATCH_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((self.resource_version, collection, object.clone(), line));
        if kind == "DELETED" {
            self.objects.remove(path);
        } else {
            self.objects.insert(path.to_string(), object);
        }
    }

    /// A uid no object had before.
    fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012}", self.next_uid)
    }

    /// A server-side apply of `applied` at `path`: creates the object, or merges the applied
    /// fields into it. Field ownership is not tracked, so a field the applier stops sending is
    /// kept (the API server would drop it).
    fn apply(&mut self, path: &str, mut applied: Value) -> Value {
        self.calls.applies += 1;
        if let Some(metadata) = applied["metadata"].as_object_mut() {
            metadata.remove("managedFields");
            metadata.remove("resourceVersion");
        }
        let (kind, updated) = match self.objects.get(path) {
            Some(current) => {
                let mut updated = current.clone();
                json_patch::merge(&mut updated, &applied);
                if &updated == current {
                    return updated;
                }
                ("MODIFIED", updated)
            }
            None => {
                applied["metadata"]["uid"] = json!(self.new_uid());
                applied["metadata"]["generation"] = json!(1);
                ("ADDED", applied)
            }
        };
        let mut updated = updated;
        self.resource_version += 1;
        updated["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.changed(path, kind, updated.clone());
        updated
    }

    /// Deletes the object at `path`, if it exists and has the uid `precondition` names.
    fn delete(&mut self, path: &str, precondition: Option<&str>) -> Response {
        self.calls.deletes += 1;
        let Some(current) = self.objects.get(path).cloned() else {
            return status(StatusCode::NOT_FOUND, "NotFound", format!("{path} not found"));
        };
        if precondition.is_some_and(|uid| current["metadata"]["uid"].as_str() != Some(uid)) {
            return status(StatusCode::CONFLICT, "Conflict", format!("{path}: the uid precondition failed"));
        }
        self.resource_version += 1;
        let mut gone = current;
        gone["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.changed(path, "DELETED", gone.clone());
        axum::Json(gone).into_response()
    }
}

/// `/apis/{group}/{version}` or `/api/v1` for an apiVersion.
fn api_prefix(api_version: &str) -> String {
    if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") }
}

fn collection_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(c, _)| c).unwrap_or(path)
}

/// The path segments after `namespaces`: `[ns, plural]`, `[ns, plural, name]` or
/// `[ns, plural, name, subresource]`.
fn namespaced_segments(path: &str) -> Vec<&str> {
    path.split_once("/namespaces/").map(|(_, rest)| rest.split('/').collect()).unwrap_or_default()
}

fn query_value<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    (code, axum::Json(body)).into_response()
}

async fn handle(
    State(server): State<FakeApiServer>,
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let segments = namespaced_segments(&path);
    let mut store = server.0.lock().expect("store lock");
    if segments.get(1).is_some_and(|plural| store.missing_kinds.iter().any(|m| m == plural)) {
        return status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource".into());
    }
    let selector = Selector::parse(query_value(&uri, "labelSelector"));
    match (&method, segments.len()) {
        (&Method::GET, 2) if query_value(&uri, "watch") == Some("true") => {
            store.calls.watches += 1;
            let since: u64 = query_value(&uri, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let oldest_kept = store.history.front().map(|(rv, _, _, _)| *rv).unwrap_or(store.resource_version + 1);
            if since + 1 < oldest_kept && since < store.resource_version {
                let expired = json!({ "type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410 } });
                return (StatusCode::OK, format!("{expired}\n")).into_response();
            }
            let (tx, rx) = mpsc::unbounded_channel();
            for (_, _, _, line) in
                store.history.iter().filter(|(rv, c, object, _)| *rv > since && *c == path && selector.matches(object))
            {
                let _ = tx.send(Ok(line.clone()));
            }
            store.watchers.push((path, selector, tx));
            Response::new(Body::from_stream(tokio_stream_of(rx)))
        }
        (&Method::GET, 2) => {
            store.calls.lists += 1;
            let prefix = format!("{path}/");
            let items: Vec<&Value> = store
                .objects
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(_, o)| o)
                .filter(|o| selector.matches(o))
                .collect();
            let list = json!({
                "kind": "List", "apiVersion": "v1",
                "metadata": { "resourceVersion": store.resource_version.to_string() }, "items": items
            });
            axum::Json(list).into_response()
        }
        (&Method::GET, 3) => {
            store.calls.gets += 1;
            match store.objects.get(&path) {
                Some(object) => axum::Json(object.clone()).into_response(),
                None => status(StatusCode::NOT_FOUND, "NotFound", format!("{path} not found")),
            }
        }
        (&Method::PATCH, 3)
            if headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
                == Some("application/apply-patch+yaml") =>
        {
            // kube sends the applied object as JSON, which is YAML too.
            match serde_json::from_slice::<Value>(&body) {
                Ok(applied) => axum::Json(store.apply(&path, applied)).into_response(),
                Err(_) => status(StatusCode::BAD_REQUEST, "BadRequest", "the applied object is not JSON".into()),
            }
        }
        (&Method::DELETE, 3) => {
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            store.delete(&path, options["preconditions"]["uid"].as_str())
        }
        (&Method::PATCH, 3 | 4) => {
            let status_subresource = segments.len() == 4 && segments[3] == "status";
            let object_path = if status_subresource { collection_of(&path).to_string() } else { path.clone() };
            let Some(current) = store.objects.get(&object_path).cloned() else {
                store.calls.unexpected += 1;
                return status(StatusCode::NOT_FOUND, "NotFound", format!("{object_path} not found"));
            };
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "the patch is not JSON".into());
            };
            let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let mut updated = current.clone();
            match content_type {
                "application/merge-patch+json" if status_subresource => {
                    store.calls.status_patches += 1;
                    // The status subresource changes nothing but the status.
                    let mut status = updated["status"].take();
                    json_patch::merge(&mut status, &patch["status"]);
                    updated["status"] = status;
                }
                "application/merge-patch+json" => {
                    store.calls.other_patches += 1;
                    json_patch::merge(&mut updated, &patch);
                }
                "application/json-patch+json" => {
                    store.calls.other_patches += 1;
                    let operations: json_patch::Patch = match serde_json::from_value(patch) {
                        Ok(p) => p,
                        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
                    };
                    // The API server compares absent lists as null (kube's finalizer tests for that).
                    let metadata = updated["metadata"].as_object_mut().expect("stored objects have metadata");
                    metadata.entry("finalizers").or_insert(Value::Null);
                    let patched = json_patch::patch(&mut updated, &operations);
                    if updated["metadata"]["finalizers"].is_null()
                        && let Some(metadata) = updated["metadata"].as_object_mut()
                    {
                        metadata.remove("finalizers");
                    }
                    if let Err(e) = patched {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
                    }
                }
                other => {
                    store.calls.unexpected += 1;
                    return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", other.to_string());
                }
            }
            if updated != current {
                if status_subresource {
                    store.calls.status_changes += 1;
                }
                store.resource_version += 1;
                updated["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
                store.changed(&object_path, "MODIFIED", updated.clone());
            }
            axum::Json(updated).into_response()
        }
        (&Method::POST, 2) if path.starts_with("/apis/events.k8s.io/") => {
            store.calls.events += 1;
            if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                store.events.push(event);
            }
            (StatusCode::CREATED, body).into_response()
        }
        _ => {
            store.calls.unexpected += 1;
            tracing::warn!(%method, %uri, "the Kubernetes API stand-in does not serve this call");
            status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} {path}"))
        }
    }
}

/// The receiving end of a watch as a body stream.
fn tokio_stream_of(
    mut rx: mpsc::UnboundedReceiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `text` with its `%XX` escapes decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten();
        match escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_selector_selects_objects_carrying_every_label_it_names() {
        let slice = json!({ "metadata": { "labels": { "kubernetes.io/service-name": "crm-receiver", "tier": "a" } } });
        let selects = |query: Option<&str>, object: &Value| Selector::parse(query).matches(object);
        assert!(selects(None, &slice));
        assert!(selects(Some("kubernetes.io%2Fservice-name%3Dcrm-receiver"), &slice));
        assert!(selects(Some("kubernetes.io/service-name=crm-receiver,tier=a"), &slice));
        assert!(!selects(Some("kubernetes.io%2Fservice-name%3Derp-receiver"), &slice));
        assert!(!selects(Some("tier=a,zone=b"), &slice));
        assert!(!selects(Some("tier=a"), &json!({ "metadata": {} })));
        assert!(!selects(Some("tier"), &slice), "a term that is not key=value selects nothing");
    }

    #[test]
    fn percent_escapes_are_decoded_and_anything_else_is_kept() {
        assert_eq!(percent_decoded("a%2Fb%3Dc"), "a/b=c");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%2f"), "%zz/");
    }
}
