//! HubSpot's webhook request signatures (v1, v2, v3): signing for the emulator, verification
//! for the receiver. The key is the app's client secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const HEADER_SIGNATURE: &str = "x-hubspot-signature";
pub const HEADER_SIGNATURE_VERSION: &str = "x-hubspot-signature-version";
pub const HEADER_SIGNATURE_V3: &str = "x-hubspot-signature-v3";
pub const HEADER_TIMESTAMP: &str = "x-hubspot-request-timestamp";

/// How old a v3 timestamp may be before the request is refused as a replay.
pub const MAX_TIMESTAMP_AGE_MS: i64 = 5 * 60 * 1000;

/// v1: hex(sha256(secret + body)).
pub fn sign_v1(secret: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// v2: hex(sha256(secret + method + uri + body)), the URI exactly as requested.
pub fn sign_v2(secret: &str, method: &str, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(method.as_bytes());
    h.update(uri.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// v3: base64(HMAC-SHA256(secret, method + decoded uri + body + timestamp)).
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    BASE64.encode(v3_mac(secret, method, uri, body, timestamp_ms).finalize().into_bytes())
}

fn v3_mac(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(decode_v3_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    mac
}

/// HubSpot decodes only these escapes in the URI before signing with v3.
pub fn decode_v3_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let candidate = rest.get(pos..pos + 3).unwrap_or("");
        match DECODED.iter().find(|(esc, _)| esc.eq_ignore_ascii_case(candidate)) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why a webhook request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("missing or malformed X-HubSpot-Request-Timestamp")]
    BadTimestamp,
    #[error("request timestamp is more than five minutes away from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::BadTimestamp => "bad_timestamp",
            SignatureError::Stale => "stale",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// The signature headers of one request, by name.
#[derive(Debug, Default, Clone)]
pub struct SignatureHeaders<'a> {
    pub v3_signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// Verifies HubSpot webhook requests with the app's client secret. v3 is preferred; v1/v2
/// are accepted only when `accept_legacy` is set (HubSpot still sends them for some apps).
#[derive(Clone)]
pub struct SignatureVerifier {
    secret: String,
    accept_legacy: bool,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureVerifier").field("accept_legacy", &self.accept_legacy).finish_non_exhaustive()
    }
}

impl SignatureVerifier {
    pub fn new(secret: impl Into<String>, accept_legacy: bool) -> Self {
        Self { secret: secret.into(), accept_legacy }
    }

    /// Checks one request. `uri` is the full URL HubSpot called (scheme, host, path, query);
    /// `now_ms` is the current time in epoch milliseconds.
    pub fn verify(
        &self,
        method: &str,
        uri: &str,
        body: &[u8],
        headers: &SignatureHeaders<'_>,
        now_ms: i64,
    ) -> Result<(), SignatureError> {
        if let Some(sig) = headers.v3_signature {
            let ts: i64 = headers.timestamp.and_then(|t| t.trim().parse().ok()).ok_or(SignatureError::BadTimestamp)?;
            // A timestamp far in the future is refused too: otherwise a captured request would
            // stay replayable for as long as its timestamp lies ahead.
            if (now_ms - ts).abs() > MAX_TIMESTAMP_AGE_MS {
                return Err(SignatureError::Stale);
            }
            let expected = BASE64.decode(sig.trim()).map_err(|_| SignatureError::Mismatch)?;
            return v3_mac(&self.secret, method, uri, body, ts)
                .verify_slice(&expected)
                .map_err(|_| SignatureError::Mismatch);
        }
        let (Some(sig), true) = (headers.signature, self.accept_legacy) else {
            return Err(SignatureError::Missing);
        };
        let expected = match headers.version.map(str::trim) {
            Some("v2") => sign_v2(&self.secret, method, uri, body),
            Some("v1") | None => sign_v1(&self.secret, body),
            Some(_) => return Err(SignatureError::Mismatch),
        };
        if bool::from(expected.as_bytes().ct_eq(sig.trim().to_ascii_lowercase().as_bytes())) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const URI: &str = "https://www.example.com/webhook_uri";
    const V1_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;

    #[test]
    fn hubspot_vectors() {
        assert_eq!(
            sign_v1(SECRET, V1_BODY.as_bytes()),
            "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
        );
        assert_eq!(
            sign_v2(SECRET, "GET", URI, b""),
            "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
        );
        assert_eq!(
            sign_v2(SECRET, "POST", URI, br#"{"example_field":"example_value"}"#),
            "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
        );
        assert_eq!(
            sign_v3(SECRET, "POST", URI, b"{'example_field':'example_value'}", 1693657560000),
            "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
        );
    }

    fn v3_headers<'a>(sig: &'a str, ts: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders { v3_signature: Some(sig), timestamp: Some(ts), ..Default::default() }
    }

    #[test]
    fn v3_accepts_valid_and_rejects_tampering() {
        let ts = 1_700_000_000_000i64;
        let body = br#"[{"eventId":1}]"#;
        let sig = sign_v3(SECRET, "POST", URI, body, ts);
        let ts_s = ts.to_string();
        let v = SignatureVerifier::new(SECRET, false);
        assert_eq!(v.verify("POST", URI, body, &v3_headers(&sig, &ts_s), ts + 1000), Ok(()));
        assert_eq!(
            v.verify("POST", URI, br#"[{"eventId":2}]"#, &v3_headers(&sig, &ts_s), ts),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify("POST", "https://evil.example.com/webhook_uri", body, &v3_headers(&sig, &ts_s), ts),
            Err(SignatureError::Mismatch)
        );
        let other = SignatureVerifier::new("another-secret", false);
        assert_eq!(other.verify("POST", URI, body, &v3_headers(&sig, &ts_s), ts), Err(SignatureError::Mismatch));
        assert_eq!(
            v.verify("POST", URI, body, &v3_headers(&sig, &ts_s), ts + MAX_TIMESTAMP_AGE_MS + 1),
            Err(SignatureError::Stale)
        );
        let missing_ts = SignatureHeaders { v3_signature: Some(&sig), ..Default::default() };
        assert_eq!(v.verify("POST", URI, body, &missing_ts, ts), Err(SignatureError::BadTimestamp));
        assert_eq!(v.verify("POST", URI, body, &v3_headers(&sig, "soon"), ts), Err(SignatureError::BadTimestamp));
        assert_eq!(v.verify("POST", URI, body, &v3_headers("not base64!", &ts_s), ts), Err(SignatureError::Mismatch));
        assert_eq!(v.verify("POST", URI, body, &SignatureHeaders::default(), ts), Err(SignatureError::Missing));
    }

    #[test]
    fn v3_decodes_only_hubspots_escapes() {
        assert_eq!(decode_v3_uri("https://x.io/a%3Ab%2Fc?q=%40me%20you%2a"), "https://x.io/a:b/c?q=@me%20you*");
        let ts = 1_700_000_000_000i64;
        let encoded = "https://x.io/hook?email=a%40b.com";
        let sig = sign_v3(SECRET, "POST", "https://x.io/hook?email=a@b.com", b"[]", ts);
        let ts_s = ts.to_string();
        assert_eq!(
            SignatureVerifier::new(SECRET, false).verify("POST", encoded, b"[]", &v3_headers(&sig, &ts_s), ts),
            Ok(())
        );
    }

    #[test]
    fn legacy_versions_only_when_accepted() {
        let sig = sign_v1(SECRET, V1_BODY.as_bytes());
        let v1 = SignatureHeaders { signature: Some(&sig), version: Some("v1"), ..Default::default() };
        assert_eq!(SignatureVerifier::new(SECRET, true).verify("POST", URI, V1_BODY.as_bytes(), &v1, 0), Ok(()));
        assert_eq!(
            SignatureVerifier::new(SECRET, false).verify("POST", URI, V1_BODY.as_bytes(), &v1, 0),
            Err(SignatureError::Missing)
        );
        let sig2 = sign_v2(SECRET, "POST", URI, b"{}");
        let v2 = SignatureHeaders { signature: Some(&sig2), version: Some("v2"), ..Default::default() };
        assert_eq!(SignatureVerifier::new(SECRET, true).verify("POST", URI, b"{}", &v2, 0), Ok(()));
        assert_eq!(
            SignatureVerifier::new(SECRET, true).verify("POST", URI, b"{ }", &v2, 0),
            Err(SignatureError::Mismatch)
        );
    }
}
