//! Checks the occurrences of one `POST /timeline/{namespace}/{name}` request against their
//! event type, and turns the good ones into what the timeline store keeps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::reverse::ingest::RecordProblem;
use crate::time::timestamp_ms;
use model::api::timeline::{Carrier, TimelineObjectType, TimelineToken, TokenType};
use model::config::TimelineEventTypeConfig;

/// Longest occurrence id taken: HubSpot's event ids are short strings, and the id is stored
/// with every occurrence and kept after delivery.
pub const MAX_ID_CHARS: usize = 128;
/// Longest string token value: HubSpot's limit for a property value.
pub const MAX_STRING_CHARS: usize = 65_536;
/// Fields an occurrence may carry.
const FIELDS: [&str; 7] = ["id", "objectId", "email", "domain", "timestamp", "tokens", "extraData"];

/// The record an occurrence is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Identity {
    ObjectId(String),
    /// Contacts only.
    Email(String),
    /// Companies only, and not with custom events.
    Domain(String),
}

/// One valid occurrence, as the timeline store keeps it: token values already in the form
/// HubSpot wants (dates as epoch milliseconds, numbers as numbers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Occurrence {
    /// `namespace/name` of the event type.
    pub event_type: String,
    /// The caller's idempotency key, unique per event type.
    pub id: String,
    pub identity: Identity,
    /// When it happened (epoch ms); HubSpot takes the time of delivery when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    pub tokens: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<Value>,
}

/// The occurrences of one request, or every bad one by index with its reasons.
pub fn validate(
    event_type: &TimelineEventTypeConfig,
    occurrences: &[Value],
) -> Result<Vec<Occurrence>, Vec<RecordProblem>> {
    let mut valid = Vec::with_capacity(occurrences.len());
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, occurrence) in occurrences.iter().enumerate() {
        match validate_occurrence(event_type, occurrence) {
            Ok(occurrence) if !seen.insert(occurrence.id.clone()) => problems.push(RecordProblem {
                index,
                reasons: vec![format!("id `{}` appears more than once in this request", occurrence.id)],
            }),
            Ok(occurrence) => valid.push(occurrence),
            Err(reasons) => problems.push(RecordProblem { index, reasons }),
        }
    }
    if problems.is_empty() { Ok(valid) } else { Err(problems) }
}

fn validate_occurrence(event_type: &TimelineEventTypeConfig, occurrence: &Value) -> Result<Occurrence, Vec<String>> {
    let Some(fields) = occurrence.as_object() else {
        return Err(vec!["an occurrence must be a JSON object".into()]);
    };
    let mut reasons: Vec<String> = fields
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| format!("unknown field `{k}`; an occurrence has {}", FIELDS.join(", ")))
        .collect();
    let id = match fields.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() && id.chars().count() <= MAX_ID_CHARS => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        None => {
            reasons.push("`id` is missing: each occurrence needs the caller's idempotency key".into());
            None
        }
        Some(_) => {
            reasons.push(format!("`id` must be a non-empty string of at most {MAX_ID_CHARS} characters"));
            None
        }
    };
    let identity = identity(event_type, fields).map_err(|reason| reasons.push(reason)).ok();
    let timestamp_ms = match fields.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let at = time_of(value);
            if at.is_none() {
                reasons.push("`timestamp` must be an RFC 3339 time or epoch milliseconds".into());
            }
            at
        }
    };
    let tokens = match fields.get("tokens") {
        Some(Value::Object(tokens)) => check_tokens(&event_type.tokens, tokens, &mut reasons),
        None if event_type.tokens.is_empty() => BTreeMap::new(),
        None => {
            reasons.push("`tokens` is missing".into());
            BTreeMap::new()
        }
        Some(_) => {
            reasons.push("`tokens` must be an object of token name to value".into());
            BTreeMap::new()
        }
    };
    let extra_data = fields.get("extraData").filter(|v| !v.is_null()).cloned();
    if extra_data.is_some() && event_type.carrier == Carrier::CustomEvents {
        reasons.push("`extraData` is not carried by custom events; put the values in tokens".into());
    }
    match (id, identity) {
        (Some(id), Some(identity)) if reasons.is_empty() => {
            Ok(Occurrence { event_type: event_type.qualified_name(), id, identity, timestamp_ms, tokens, extra_data })
        }
        _ => Err(reasons),
    }
}

/// The record the occurrence names: exactly one of `objectId`, `email` (contacts) and `domain`
/// (companies, not through custom events).
fn identity(event_type: &TimelineEventTypeConfig, fields: &Map<String, Value>) -> Result<Identity, String> {
    let given: Vec<&str> = ["objectId", "email", "domain"].into_iter().filter(|k| fields.contains_key(*k)).collect();
    let [field] = given.as_slice() else {
        return Err("name the record with exactly one of `objectId`, `email` (contacts) or `domain` (companies)".into());
    };
    let object_type = event_type.object_type;
    match (*field, &fields[*field]) {
        ("objectId", Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Ok(Identity::ObjectId(n.to_string())),
        ("objectId", Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Identity::ObjectId(s.clone()))
        }
        ("objectId", _) => Err("`objectId` must be a HubSpot record id (a positive integer)".into()),
        ("email", _) if object_type != TimelineObjectType::Contacts => {
            Err(format!("`email` names contacts only; this event type is on {}", object_type.as_str()))
        }
        ("email", Value::String(s)) if looks_like_email(s) => Ok(Identity::Email(s.clone())),
        ("email", _) => Err("`email` must be an email address".into()),
        ("domain", _) if object_type != TimelineObjectType::Companies => {
            Err(format!("`domain` names companies only; this event type is on {}", object_type.as_str()))
        }
        ("domain", _) if event_type.carrier == Carrier::CustomEvents => {
            Err("custom events name a company by `objectId` only".into())
        }
        ("domain", Value::String(s)) if s.contains('.') && !s.contains(char::is_whitespace) => {
            Ok(Identity::Domain(s.clone()))
        }
        _ => Err("`domain` must be a domain name such as example.com".into()),
    }
}

fn looks_like_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !s.contains(char::is_whitespace)
}

/// Epoch milliseconds of an RFC 3339 string or a number of milliseconds.
fn time_of(value: &Value) -> Option<i64> {
    match value {
        Value::String(text) => timestamp_ms(text),
        Value::Number(n) => n.as_i64().filter(|ms| *ms >= 0),
        _ => None,
    }
}

/// Every declared token must be present and of its type; nothing else may be.
fn check_tokens(
    declared: &[TimelineToken],
    tokens: &Map<String, Value>,
    reasons: &mut Vec<String>,
) -> BTreeMap<String, Value> {
    let mut converted = BTreeMap::new();
    for name in tokens.keys().filter(|name| !declared.iter().any(|t| &t.name == *name)) {
        reasons.push(format!("unknown token `{name}`: the event type does not declare it"));
    }
    for token in declared {
        let Some(value) = tokens.get(&token.name) else {
            reasons.push(format!("token `{}` is missing", token.name));
            continue;
        };
        match convert(token, value) {
            Ok(value) => {
                converted.insert(token.name.clone(), value);
            }
            Err(reason) => reasons.push(format!("token `{}` {reason}", token.name)),
        }
    }
    converted
}

/// A token's value in the form HubSpot wants, or what is wrong with it.
fn convert(token: &TimelineToken, value: &Value) -> Result<Value, String> {
    match (token.type_, value) {
        (TokenType::String, Value::String(s)) if s.chars().count() <= MAX_STRING_CHARS => Ok(value.clone()),
        (TokenType::String, Value::String(_)) => Err(format!("is longer than {MAX_STRING_CHARS} characters")),
        (TokenType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (TokenType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (TokenType::String, _) => Err("must be a string".into()),
        (TokenType::Number, Value::Number(_)) => Ok(value.clone()),
        (TokenType::Number, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => {
                serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| "must be a number".into())
            }
            _ => Err("must be a number".into()),
        },
        (TokenType::Number, _) => Err("must be a number".into()),
        (TokenType::Date, _) => time_of(value)
            .map(|ms| Value::Number(ms.into()))
            .ok_or_else(|| "must be a date (RFC 3339 or epoch milliseconds)".into()),
        (TokenType::Enumeration, Value::String(s)) if token.options.iter().any(|o| &o.value == s) => Ok(value.clone()),
        (TokenType::Enumeration, _) => Err(format!(
            "must be one of the declared options: {}",
            token.options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::api::timeline::TokenOption;
    use serde_json::json;

    fn token(name: &str, type_: TokenType) -> TimelineToken {
        let options = if type_ == TokenType::Enumeration {
            vec![TokenOption { value: "pro".into(), label: "Pro".into() }]
        } else {
            vec![]
        };
        TimelineToken { name: name.into(), label: name.into(), type_, options, object_property_name: None }
    }

    fn event_type(carrier: Carrier) -> TimelineEventTypeConfig {
        TimelineEventTypeConfig {
            namespace: "crm".into(),
            name: "feature-used".into(),
            object_type: TimelineObjectType::Contacts,
            carrier,
            hubspot_name: "pe1_feature_used".into(),
            tokens: vec![
                token("feature", TokenType::String),
                token("seats", TokenType::Number),
                token("since", TokenType::Date),
                token("plan", TokenType::Enumeration),
            ],
        }
    }

    #[test]
    fn valid_occurrences_carry_tokens_as_hubspot_wants_them() {
        let occurrences = [json!({
            "id": "u-1", "email": "ada@example.com", "timestamp": "1970-01-01T00:00:02Z",
            "tokens": {"feature": "export", "seats": "3", "since": "1970-01-01T00:00:01Z", "plan": "pro"}
        })];
        let valid = validate(&event_type(Carrier::CustomEvents), &occurrences).unwrap();
        assert_eq!(valid[0].event_type, "crm/feature-used");
        assert_eq!(valid[0].identity, Identity::Email("ada@example.com".into()));
        assert_eq!(valid[0].timestamp_ms, Some(2_000));
        assert_eq!(valid[0].tokens["seats"], json!(3.0));
        assert_eq!(valid[0].tokens["since"], json!(1_000));
    }

    #[test]
    fn every_bad_occurrence_is_listed_by_index_with_its_reasons() {
        let good =
            json!({"id": "ok", "objectId": 7, "tokens": {"feature": "a", "seats": 1, "since": 5, "plan": "pro"}});
        let occurrences = [
            good.clone(),
            json!({"objectId": 7, "tokens": {"feature": "a", "seats": "many", "since": "yesterday", "plan": "gold", "x": 1}}),
            json!({"id": "d", "domain": "example.com", "email": "a@example.com", "tokens": {}}),
            json!({"id": "t", "objectId": 7, "timestamp": "soon", "tokens": {"feature": "a", "seats": 1, "since": 5, "plan": "pro"}}),
            good,
            json!({"id": "x".repeat(MAX_ID_CHARS + 1), "objectId": 7, "tokens": {"feature": "a", "seats": 1, "since": 5, "plan": "pro"}}),
        ];
        let problems = validate(&event_type(Carrier::CustomEvents), &occurrences).unwrap_err();
        assert_eq!(problems.iter().map(|p| p.index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let reasons = &problems[0].reasons;
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("`id` is missing")));
        assert!(reasons.iter().any(|r| r.contains("unknown token `x`")));
        assert!(reasons.iter().any(|r| r.contains("token `plan` must be one of the declared options: pro")));
        assert!(problems[1].reasons.iter().any(|r| r.contains("exactly one of")), "{:?}", problems[1].reasons);
        assert!(problems[1].reasons.iter().any(|r| r.contains("token `feature` is missing")));
        assert!(problems[2].reasons[0].contains("`timestamp`"));
        assert!(problems[3].reasons[0].contains("more than once"));
        assert!(problems[4].reasons[0].contains("at most 128"));
    }

    #[test]
    fn identities_follow_the_object_type_and_carrier() {
        let mut companies = event_type(Carrier::CustomEvents);
        companies.object_type = TimelineObjectType::Companies;
        companies.tokens.clear();
        let problems = validate(
            &companies,
            &[json!({"id": "1", "email": "a@example.com"}), json!({"id": "2", "domain": "example.com"})],
        )
        .unwrap_err();
        assert!(problems[0].reasons[0].contains("contacts only"));
        assert!(problems[1].reasons[0].contains("by `objectId` only"));
        companies.carrier = Carrier::AppEvents;
        let valid = validate(&companies, &[json!({"id": "2", "domain": "example.com"})]).unwrap();
        assert_eq!(valid[0].identity, Identity::Domain("example.com".into()));
    }
}
