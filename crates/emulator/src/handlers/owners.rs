//! Owners: `GET /crm/v3/owners` (paged with `after` and `limit`, `email` filter, `archived`)
//! and `GET /crm/v3/owners/{ownerId}` (`idProperty=id|userId`), read-only as in HubSpot, with
//! the `crm.objects.owners.read` scope; and the admin API's `/_emulator/owners`, which adds,
//! changes and deactivates them as users do in HubSpot's settings.

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::{FullPath, Params, Shared, bool_param, json_response, next_link, param, parse_json};
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::store::owners::{OwnerInput, owner_not_found};

/// The scope HubSpot requires to read owners.
const OWNERS_READ: &str = "crm.objects.owners.read";
/// HubSpot's default and largest page of owners.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

pub async fn list_owners(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Extension(FullPath(path)): Extension<FullPath>,
    headers: HeaderMap,
    Query(params): Params,
) -> ApiResult<Response> {
    caller.require_any(&[OWNERS_READ.into()])?;
    let limit = match param(&params, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiFailure::validation(&format!("limit must be between 1 and {MAX_LIMIT}")))?,
    };
    // The cursor is the id of the last owner of the previous page.
    let after = match param(&params, "after") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| ApiFailure::validation(&format!("{v} is not a valid after cursor")))?,
    };
    let archived = bool_param(&params, "archived");
    let email = param(&params, "email").map(str::to_ascii_lowercase);
    let store = emu.store.lock().expect("store lock");
    let mut matching = store
        .owners()
        .by_id
        .values()
        .filter(|o| o.id > after && o.archived == archived)
        .filter(|o| email.as_ref().is_none_or(|e| &o.email == e));
    let page: Vec<Value> = matching.by_ref().take(limit).map(|o| o.to_json()).collect();
    let mut body = json!({ "results": page });
    if matching.next().is_some() {
        let last: u64 = page.last().and_then(|o| o["id"].as_str()).and_then(|id| id.parse().ok()).unwrap_or(after);
        body["paging"] =
            json!({ "next": { "after": last.to_string(), "link": next_link(&headers, &path, &params, last) } });
    }
    Ok(json_response(StatusCode::OK, body))
}

pub async fn get_owner(
    State(emu): Shared,
    Extension(caller): Extension<Caller>,
    Path(owner_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    caller.require_any(&[OWNERS_READ.into()])?;
    let by_user_id = match param(&params, "idProperty") {
        None | Some("id") => false,
        Some("userId") => true,
        Some(other) => {
            return Err(ApiFailure::validation(&format!("idProperty must be one of id, userId, not {other}")));
        }
    };
    let id: u64 =
        owner_id.parse().map_err(|_| ApiFailure::validation(&format!("{owner_id} is not a valid owner id")))?;
    let archived = bool_param(&params, "archived");
    let store = emu.store.lock().expect("store lock");
    let owner =
        store.owners().find(id, by_user_id).filter(|o| o.archived == archived).ok_or_else(|| owner_not_found(id))?;
    Ok(json_response(StatusCode::OK, owner.to_json()))
}

/// `GET /_emulator/owners`: every owner, deactivated ones included.
pub async fn all_owners(State(emu): Shared) -> Response {
    let store = emu.store.lock().expect("store lock");
    let owners: Vec<Value> = store.owners().by_id.values().map(|o| o.to_json()).collect();
    json_response(StatusCode::OK, Value::Array(owners))
}

/// `POST /_emulator/owners` `{email, firstName?, lastName?, userId?, teams?}`: a new user who
/// can own records (201 with the owner).
pub async fn add_owner(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let input: OwnerInput = parse_json(&body)?;
    let created = emu.store.lock().expect("store lock").add_owner(input, now_ms())?;
    Ok(json_response(StatusCode::CREATED, created))
}

/// `PATCH /_emulator/owners/{ownerId}` `{email?, firstName?, lastName?, teams?, archived?}`:
/// changes an owner; `archived: true` deactivates its user.
pub async fn update_owner(State(emu): Shared, Path(owner_id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let input: OwnerInput = parse_json(&body)?;
    let id: u64 = owner_id.parse().map_err(|_| owner_not_found(&owner_id))?;
    let updated = emu.store.lock().expect("store lock").update_owner(id, input, now_ms())?;
    Ok(json_response(StatusCode::OK, updated))
}
