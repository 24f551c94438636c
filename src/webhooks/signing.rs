//! Standard Webhooks 1.0: secrets, the body, and the signature of each attempt.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::domain::{ActivityEntry, timestamp};

/// The prefix of a signing secret.
const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source works");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// `webhook-signature` for one attempt: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`
/// per secret, space-separated. A secret that is not ours (never: the database checks
/// their form) is left out.
pub fn signature(secrets: &[String], event_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(event_id.len() + 24 + body.len());
    signed.extend_from_slice(event_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let entries: Vec<String> = secrets
        .iter()
        .filter_map(|secret| STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok())
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
            mac.update(&signed);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect();
    entries.join(" ")
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: T,
}

/// The body of an activity event: the same bytes on every attempt.
pub fn event_body(event_type: &str, entry: &ActivityEntry) -> Vec<u8> {
    body(event_type, entry.created_at, entry)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ping {
    webhook_id: i64,
}

/// The body of a `webhook.ping`.
pub fn ping_body(webhook_id: i64, requested_at: OffsetDateTime) -> Vec<u8> {
    body(crate::domain::PING, requested_at, Ping { webhook_id })
}

fn body<T: Serialize>(event_type: &str, at: OffsetDateTime, data: T) -> Vec<u8> {
    let envelope = Envelope { event_type, timestamp: timestamp::format(at), data };
    serde_json::to_vec(&envelope).expect("an event serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&a[6..]).unwrap().len(), 32);
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let body = br#"{"test": 2432232314}"#;
        let signed = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_sign_twice() {
        let signed = signature(&[new_secret(), new_secret()], "msg_1", 1, b"{}");
        assert_eq!(signed.split(' ').count(), 2);
        assert!(signed.split(' ').all(|s| s.starts_with("v1,")));
    }
}
