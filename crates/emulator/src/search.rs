//! CRM search (`POST /crm/v3/objects/{t}/search`): filter groups (OR of ANDs), one sort, a text
//! query, offset paging, with HubSpot's limits on filters, page size and result depth.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::parse_instant_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{ObjectType, PropertyDef};
use crate::store::{Selection, StoredObject, TypeStore, property_value_string};

const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 6;
const MAX_FILTERS: usize = 18;
const MAX_LIMIT: usize = 200;
const DEFAULT_LIMIT: usize = 10;
/// A query can page through at most this many results.
const MAX_DEPTH: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    sorts: Vec<Value>,
    query: Option<String>,
    #[serde(default)]
    properties: Vec<String>,
    limit: Option<usize>,
    after: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    property_name: String,
    operator: String,
    value: Option<Value>,
    #[serde(default)]
    values: Vec<Value>,
    high_value: Option<Value>,
}

/// Runs a search over one type's live objects; HubSpot's answer `{total, results, paging?}`.
/// With `indexed_until`, the search index holds the objects as they were at that instant:
/// HubSpot indexes writes a short while after they are made.
pub fn search(
    t: ObjectType,
    store: &TypeStore,
    request: SearchRequest,
    indexed_until: Option<i64>,
) -> ApiResult<Value> {
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiFailure::validation(&format!("limit must be at most {MAX_LIMIT}, was {limit}")));
    }
    let offset = match &request.after {
        None => 0,
        Some(v) => property_value_string(v)
            .and_then(|s| if s.is_empty() { Some(0) } else { s.parse::<usize>().ok() })
            .ok_or_else(|| ApiFailure::validation(&format!("Invalid after cursor: {v}")))?,
    };
    if offset + limit > MAX_DEPTH {
        return Err(ApiFailure::validation(&format!("Search results can be paged up to {MAX_DEPTH} results deep")));
    }
    check_filter_counts(&request.filter_groups)?;
    for f in request.filter_groups.iter().flat_map(|g| &g.filters) {
        if store.live_property(&f.property_name).is_none() {
            return Err(ApiFailure::validation(&format!("Property {} does not exist", f.property_name)));
        }
    }
    let sort = parse_sort(&request.sorts, store)?;
    let query = request.query.as_deref().map(str::to_lowercase).filter(|q| !q.trim().is_empty());
    let indexed: Vec<Cow<StoredObject>> = match indexed_until {
        None => store.objects.values().filter(|o| !o.is_archived()).map(Cow::Borrowed).collect(),
        Some(instant) => store.objects.values().filter_map(|o| o.as_of(instant)).map(Cow::Owned).collect(),
    };
    let mut matched = vec![];
    for object in indexed.iter().map(Cow::as_ref) {
        if let Some(q) = &query
            && !matches_query(store, object, q)
        {
            continue;
        }
        if request.filter_groups.is_empty() || any_group_matches(&request.filter_groups, object, store)? {
            matched.push(object);
        }
    }
    if let Some((property, descending)) = &sort {
        let def = &store.properties[property];
        matched.sort_by(|a, b| {
            // Objects without the value come last in either direction.
            let ordering = match (value_of(a, property), value_of(b, property)) {
                (Some(x), Some(y)) if *descending => compare(def, x, y).reverse(),
                (Some(x), Some(y)) => compare(def, x, y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            ordering.then(a.id.cmp(&b.id))
        });
    }
    let names = if request.properties.is_empty() {
        t.default_properties().iter().map(|s| s.to_string()).collect()
    } else {
        request.properties
    };
    let total = matched.len();
    let results: Vec<Value> = matched
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| o.to_json(t, &store.properties, Selection::Named(&names)))
        .collect();
    let mut body = json!({ "total": total, "results": results });
    if offset + limit < total.min(MAX_DEPTH) {
        body["paging"] = json!({ "next": { "after": (offset + limit).to_string() } });
    }
    Ok(body)
}

fn check_filter_counts(groups: &[FilterGroup]) -> ApiResult<()> {
    let total: usize = groups.iter().map(|g| g.filters.len()).sum();
    if groups.len() > MAX_GROUPS
        || groups.iter().any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        || total > MAX_FILTERS
    {
        return Err(ApiFailure::validation(&format!(
            "A search may have at most {MAX_GROUPS} filter groups with at most {MAX_FILTERS_PER_GROUP} filters each and {MAX_FILTERS} filters in total"
        )));
    }
    Ok(())
}

/// `["createdate"]` or `[{"propertyName": "createdate", "direction": "DESCENDING"}]`.
fn parse_sort(sorts: &[Value], store: &TypeStore) -> ApiResult<Option<(String, bool)>> {
    let Some(first) = sorts.first() else { return Ok(None) };
    let (property, descending) = match first {
        Value::String(p) => (p.clone(), false),
        Value::Object(o) => {
            let p = o.get("propertyName").and_then(Value::as_str).unwrap_or_default().to_string();
            let direction = o.get("direction").and_then(Value::as_str).unwrap_or("ASCENDING");
            (p, direction.eq_ignore_ascii_case("DESCENDING") || direction.eq_ignore_ascii_case("DESC"))
        }
        _ => return Err(ApiFailure::validation("Invalid sort")),
    };
    if store.live_property(&property).is_none() {
        return Err(ApiFailure::validation(&format!("Cannot sort by unknown property {property}")));
    }
    Ok(Some((property, descending)))
}

fn value_of<'a>(object: &'a StoredObject, property: &str) -> Option<&'a str> {
    object.properties.get(property).map(String::as_str).filter(|v| !v.is_empty())
}

/// Text search over the type's searchable properties.
fn matches_query(store: &TypeStore, object: &StoredObject, query: &str) -> bool {
    store.searchable.iter().filter_map(|p| value_of(object, p)).any(|v| v.to_lowercase().contains(query))
}

fn any_group_matches(groups: &[FilterGroup], object: &StoredObject, store: &TypeStore) -> ApiResult<bool> {
    for group in groups {
        let mut all = true;
        for f in &group.filters {
            if !filter_matches(f, value_of(object, &f.property_name), &store.properties[&f.property_name])? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn filter_matches(f: &Filter, actual: Option<&str>, def: &PropertyDef) -> ApiResult<bool> {
    let operand = |v: &Option<Value>| -> ApiResult<String> {
        v.as_ref().and_then(property_value_string).ok_or_else(|| {
            ApiFailure::validation(&format!("Filter {} on {} needs a value", f.operator, f.property_name))
        })
    };
    let cmp = |expected: &str| actual.map(|a| compare(def, a, expected));
    Ok(match f.operator.as_str() {
        "HAS_PROPERTY" => actual.is_some(),
        "NOT_HAS_PROPERTY" => actual.is_none(),
        "EQ" => cmp(&operand(&f.value)?) == Some(Ordering::Equal),
        "NEQ" => cmp(&operand(&f.value)?) != Some(Ordering::Equal),
        "LT" => cmp(&operand(&f.value)?) == Some(Ordering::Less),
        "LTE" => matches!(cmp(&operand(&f.value)?), Some(Ordering::Less | Ordering::Equal)),
        "GT" => cmp(&operand(&f.value)?) == Some(Ordering::Greater),
        "GTE" => matches!(cmp(&operand(&f.value)?), Some(Ordering::Greater | Ordering::Equal)),
        "BETWEEN" => {
            let (low, high) = (operand(&f.value)?, operand(&f.high_value)?);
            matches!(cmp(&low), Some(Ordering::Greater | Ordering::Equal))
                && matches!(cmp(&high), Some(Ordering::Less | Ordering::Equal))
        }
        "IN" | "NOT_IN" => {
            let values: Vec<String> = f.values.iter().filter_map(property_value_string).collect();
            let found = values.iter().any(|v| cmp(v) == Some(Ordering::Equal));
            if f.operator == "IN" { found } else { !found }
        }
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let token = operand(&f.value)?.to_lowercase();
            let found = actual.is_some_and(|a| contains_token(&a.to_lowercase(), &token));
            if f.operator == "CONTAINS_TOKEN" { found } else { !found }
        }
        other => return Err(ApiFailure::validation(&format!("Unknown filter operator {other}"))),
    })
}

/// A whole-word match, or a `*` wildcard pattern over the whole value (`*@example.com`).
fn contains_token(value: &str, token: &str) -> bool {
    if token.contains('*') {
        return wildcard_match(value, token);
    }
    value.split(|c: char| !c.is_alphanumeric()).any(|word| word == token)
}

fn wildcard_match(value: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Numbers numerically, dates by instant, everything else as case-insensitive text.
fn compare(def: &PropertyDef, a: &str, b: &str) -> Ordering {
    match def.type_.as_str() {
        "number" => {
            if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
                return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            }
        }
        "date" | "datetime" => {
            if let (Some(x), Some(y)) = (parse_instant_ms(a), parse_instant_ms(b)) {
                return x.cmp(&y);
            }
        }
        _ => {}
    }
    a.to_lowercase().cmp(&b.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Actor, Store, Write};

    fn store_with_deals() -> Store {
        let mut store = Store::new(1, None);
        let writes =
            [("Alpha deal", "100", "2024-01-10"), ("Beta", "2500", "2024-03-01"), ("Gamma deal", "", "2024-02-01")]
                .iter()
                .map(|(name, amount, close)| Write::Create {
                    properties: [("dealname", *name), ("amount", *amount), ("closedate", *close)]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                })
                .collect();
        store.apply_all(ObjectType::Deals, writes, Actor::User { user_id: 1 }).unwrap();
        store
    }

    fn run(store: &Store, request: Value) -> ApiResult<Value> {
        search(ObjectType::Deals, store.of(ObjectType::Deals), serde_json::from_value(request).unwrap(), None)
    }

    fn ids(body: &Value) -> Vec<&str> {
        body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn filters_combine_as_or_of_ands() {
        let store = store_with_deals();
        let body = run(
            &store,
            json!({"filterGroups": [
                {"filters": [{"propertyName": "amount", "operator": "GT", "value": "99"}, {"propertyName": "amount", "operator": "LT", "value": 1000}]},
                {"filters": [{"propertyName": "amount", "operator": "NOT_HAS_PROPERTY"}]},
            ]}),
        )
        .unwrap();
        assert_eq!(ids(&body), vec!["1", "3"]);
        assert_eq!(body["total"], 2);
        let between = json!({"filterGroups": [{"filters": [
            {"propertyName": "closedate", "operator": "BETWEEN", "value": "2024-01-15", "highValue": "1709251200000"}
        ]}]});
        assert_eq!(ids(&run(&store, between).unwrap()), vec!["2", "3"]);
        let token = json!({"filterGroups": [{"filters": [{"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "DEAL"}]}]});
        assert_eq!(ids(&run(&store, token).unwrap()), vec!["1", "3"]);
        let wildcard = json!({"filterGroups": [{"filters": [{"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "g*l"}]}]});
        assert_eq!(ids(&run(&store, wildcard).unwrap()), vec!["3"]);
        let within = json!({"filterGroups": [{"filters": [{"propertyName": "dealname", "operator": "IN", "values": ["beta", "alpha deal"]}]}]});
        assert_eq!(ids(&run(&store, within).unwrap()), vec!["1", "2"]);
    }

    #[test]
    fn sorts_pages_and_limits() {
        let store = store_with_deals();
        let body =
            run(&store, json!({"sorts": [{"propertyName": "amount", "direction": "DESCENDING"}], "limit": 2})).unwrap();
        assert_eq!(ids(&body), vec!["2", "1"]);
        assert_eq!(body["paging"]["next"]["after"], "2");
        let last = run(&store, json!({"sorts": ["amount"], "limit": 2, "after": "2"})).unwrap();
        assert_eq!(ids(&last), vec!["3"], "objects without the value sort last");
        assert!(last.get("paging").is_none());
        assert_eq!(ids(&run(&store, json!({"query": "gam"})).unwrap()), vec!["3"]);
        assert!(run(&store, json!({"limit": 201})).is_err());
        assert!(run(&store, json!({"limit": 100, "after": "9950"})).is_err());
        let groups: Vec<Value> =
            (0..6).map(|_| json!({"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}]})).collect();
        assert!(run(&store, json!({ "filterGroups": groups })).is_err());
        let unknown =
            json!({"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "LIKE", "value": "1"}]}]});
        assert!(run(&store, unknown).is_err());
    }
}
