//! A fake Kubernetes API server for the operator's tests and benchmarks.
//!
//! A stand-in for the Kubernetes API server, served over HTTP, enough for the controllers to
//! run against: get, list (equality-based label selectors) and watch of namespaced objects, merge
//! patches of the status subresource, JSON patches (finalizers) and Event creation. Tests read
//! back the objects, the Events and the count of each kind of call. Like the API server, it
//! bumps an object's `resourceVersion` and tells watchers only when a write changes the object,
//! so a status patch that changes nothing triggers no reconcile.

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
}

#[derive(Default)]
struct Store {
    /// Objects by path (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`).
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    /// `(resourceVersion, collection path, event line)`, oldest first.
    history: VecDeque<(u64, String, Bytes)>,
    watchers: Vec<(String, mpsc::UnboundedSender<Result<Bytes, Infallible>>)>,
    calls: ApiCalls,
    /// The Events created, oldest first.
    events: Vec<Value>,
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
    /// under `plural`, as a create would.
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
        if object["metadata"]["generation"].is_null() {
            object["metadata"]["generation"] = json!(1);
        }
        store.changed(&path, "ADDED", object);
    }

    pub fn calls(&self) -> ApiCalls {
        self.0.lock().expect("store lock").calls
    }
}

impl Store {
    /// Stores `object` at `path` (its resourceVersion already set) and tells the watchers.
    fn changed(&mut self, path: &str, kind: &str, object: Value) {
        let collection = collection_of(path).to_string();
        let mut line = serde_json::to_vec(&json!({ "type": kind, "object": &object })).expect("JSON");
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watchers.retain(|(c, tx)| c != &collection || tx.send(Ok(line.clone())).is_ok());
        if self.history.len() == WATCH_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((self.resource_version, collection, line));
        self.objects.insert(path.to_string(), object);
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
    match (&method, segments.len()) {
        (&Method::GET, 2) if query_value(&uri, "watch") == Some("true") => {
            store.calls.watches += 1;
            let since: u64 = query_value(&uri, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let oldest_kept = store.history.front().map(|(rv, _, _)| *rv).unwrap_or(store.resource_version + 1);
            if since + 1 < oldest_kept && since < store.resource_version {
                let expired = json!({ "type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410 } });
                return (StatusCode::OK, format!("{expired}\n")).into_response();
            }
            let (tx, rx) = mpsc::unbounded_channel();
            for (_, _, line) in store.history.iter().filter(|(rv, c, _)| *rv > since && *c == path) {
                let _ = tx.send(Ok(line.clone()));
            }
            store.watchers.push((path, tx));
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
                .filter(|o| has_labels(o, query_value(&uri, "labelSelector")))
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
            store.events.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
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

impl FakeApiServer {
    /// The object stored at `path` (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`).
    pub fn object(&self, path: &str) -> Option<Value> {
        self.0.lock().expect("store lock").objects.get(path).cloned()
    }

    /// The Events created so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.0.lock().expect("store lock").events.clone()
    }
}

/// Whether `object` carries every `key=value` of an equality-based label `selector` (as sent in
/// a query, percent-encoded); no selector selects everything.
fn has_labels(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.map(percent_decoded) else { return true };
    selector.split(',').filter(|term| !term.is_empty()).all(|term| match term.split_once('=') {
        Some((key, value)) => object["metadata"]["labels"][key].as_str() == Some(value),
        None => false,
    })
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
        assert!(has_labels(&slice, None));
        assert!(has_labels(&slice, Some("kubernetes.io%2Fservice-name%3Dcrm-receiver")));
        assert!(has_labels(&slice, Some("kubernetes.io/service-name=crm-receiver,tier=a")));
        assert!(!has_labels(&slice, Some("kubernetes.io%2Fservice-name%3Derp-receiver")));
        assert!(!has_labels(&slice, Some("tier=a,zone=b")));
        assert!(!has_labels(&json!({ "metadata": {} }), Some("tier=a")));
    }

    #[test]
    fn percent_escapes_are_decoded_and_anything_else_is_kept() {
        assert_eq!(percent_decoded("a%2Fb%3Dc"), "a/b=c");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%2f"), "%zz/");
    }
}
