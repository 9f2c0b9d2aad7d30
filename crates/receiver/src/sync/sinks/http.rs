//! POSTs `{"records":[...]}` to an HTTP endpoint, signed in the Standard Webhooks format
//! (<https://www.standardwebhooks.com>) when a signing secret is configured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::jiff::{Timestamp, fmt::rfc2822};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::SinkError;
use crate::sync::plan::Record;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How long one delivery may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP destination.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    signing_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink").field("signed", &self.signing_key.is_some()).finish_non_exhaustive()
    }
}

impl HttpSink {
    /// `signing_secret` is either a Standard Webhooks secret (`whsec_` + base64 key) or any
    /// other string, whose bytes are the key.
    pub fn new(url: &str, signing_secret: Option<&str>) -> anyhow::Result<HttpSink> {
        reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("invalid HTTP destination URL: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("hubspot-operator/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            // A redirect would send the signed records somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpSink { client, url: url.to_string(), signing_key: signing_secret.map(signing_key) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn deliver(&self, records: &[Record]) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&serde_json::json!({ "records": records }))
            .map_err(|e| SinkError::Permanent { reason: format!("records are not serialisable: {e}") })?;
        let mut request = self.client.post(&self.url).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.signing_key {
            let id = message_id(records);
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
            request = request
                .header(HEADER_ID, &id)
                .header(HEADER_TIMESTAMP, timestamp.to_string())
                .header(HEADER_SIGNATURE, sign(key, &id, timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Retryable { reason: e.without_url().to_string(), retry_after: None })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(response.headers());
        let reason = format!("HTTP {status}");
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            Err(SinkError::Retryable { reason, retry_after })
        } else {
            Err(SinkError::Permanent { reason })
        }
    }
}

/// The HMAC key of a secret: Standard Webhooks secrets are `whsec_` + base64 of the key.
fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The message id of a batch: derived from its records' idempotency keys, so a retried batch
/// keeps its id and the destination can drop the replay.
pub fn message_id(records: &[Record]) -> String {
    let mut hash = Sha256::new();
    for record in records {
        hash.update(record.idempotency_key.as_bytes());
        hash.update(b"\n");
    }
    format!("msg_{}", hex::encode(&hash.finalize()[..16]))
}

/// `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// `Retry-After` as seconds or as an HTTP date; capped at an hour.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = rfc2822::parse(value).ok()?.timestamp();
            Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_secret_is_decoded() {
        assert_eq!(
            signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
        );
        assert_eq!(signing_key("plain-secret"), b"plain-secret".to_vec());
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks reference libraries.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(http::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
