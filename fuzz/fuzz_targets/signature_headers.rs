//! A webhook request's signature headers, as the receiver checks them: any secret, method,
//! URI, body, header values and clock.
//!
//! Properties: a verifier accepts a request only with the one signature the secret makes of
//! it (so never a mutated one), and always accepts that signature within the timestamp
//! window; HubSpot's URI decoding is idempotent and never lengthens a URI.
//!
//! The input is text, so that HubSpot's published vectors are seeds as they are written:
//!
//! ```text
//! secret
//! method
//! uri
//! X-HubSpot-Signature-v3       ("-": no such header)
//! X-HubSpot-Request-Timestamp  ("-": no such header)
//! X-HubSpot-Signature          ("-": no such header)
//! X-HubSpot-Signature-Version  ("-": no such header)
//! now_ms accept_legacy mutation_position mutation_byte   (numbers; missing or bad: 0)
//! body (the rest)
//! ```
#![no_main]

use hubspot::signature::{SignatureHeaders, SignatureVerifier, decode_v3_uri, sign_v1, sign_v2, sign_v3};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(9, '\n');
    let mut line = || lines.next().unwrap_or("");
    let (secret, method, uri) = (line(), line(), line());
    let (v3_signature, timestamp, signature, version) = (line(), line(), line(), line());
    let headers = SignatureHeaders {
        v3_signature: (v3_signature != "-").then_some(v3_signature),
        timestamp: (timestamp != "-").then_some(timestamp),
        signature: (signature != "-").then_some(signature),
        version: (version != "-").then_some(version),
    };
    let mut numbers = line().split(' ').map(|n| n.parse::<i64>().unwrap_or(0));
    let mut number = || numbers.next().unwrap_or(0);
    let (now_ms, accept_legacy, mutation_position, mutation_byte) = (number(), number() != 0, number(), number());
    let body = line().as_bytes();

    let verifier = SignatureVerifier::new(secret, accept_legacy);
    if verifier.verify(method, uri, body, &headers, now_ms).is_ok() {
        match headers.v3_signature {
            Some(presented) => {
                let ts: i64 =
                    headers.timestamp.expect("an accepted v3 signature has a timestamp").trim().parse().unwrap();
                assert_eq!(presented.trim(), sign_v3(secret, method, uri, body, ts), "only the right signature");
            }
            None => {
                assert!(accept_legacy, "legacy signatures only when accepted");
                let presented = headers.signature.expect("a legacy signature").trim().to_ascii_lowercase();
                assert!(presented == sign_v1(secret, body) || presented == sign_v2(secret, method, uri, body));
            }
        }
    }

    // The right v3 signature is accepted; any change to it is refused.
    let ts = now_ms.clamp(0, i64::MAX / 2);
    let ts_text = ts.to_string();
    let right = sign_v3(secret, method, uri, body, ts);
    let v3 = |signature: &str| {
        let headers =
            SignatureHeaders { v3_signature: Some(signature), timestamp: Some(&ts_text), ..Default::default() };
        verifier.verify(method, uri, body, &headers, ts)
    };
    assert_eq!(v3(&right), Ok(()));
    let mut mutated = right.clone().into_bytes();
    let position = mutation_position.unsigned_abs() as usize % mutated.len();
    mutated[position] = mutation_byte as u8;
    if let Ok(mutated) = String::from_utf8(mutated)
        && mutated.trim() != right
    {
        assert!(v3(&mutated).is_err(), "accepted {mutated:?} for {right:?}");
    }

    let decoded = decode_v3_uri(uri);
    assert!(decoded.len() <= uri.len());
    assert_eq!(decode_v3_uri(&decoded), decoded, "decoding is idempotent");
});
