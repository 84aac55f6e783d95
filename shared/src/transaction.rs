//! What the user's device shows for a pending request, and the hash that links a decision to it
//! (dynamic linking, PSD2 RTS art. 5): the device signs `txn_hash`, the SHA-256 of the RFC 8785
//! canonical JSON (`jcs`) of exactly the `shown` object; the OP computes the same from the
//! request it stored and refuses a decision whose hash differs. An approval therefore covers one
//! client, one binding message, one scope, one set of `authorization_details` and one expiry,
//! and nothing else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::{AuthRequest, Evidence};
use crate::jcs;

/// Characters of the push's one-line summary: the platforms allow about 4 KB per payload, and a
/// lock screen shows a line or two.
pub const SUMMARY_MAX_CHARS: usize = 120;

/// The object the device shows and hashes: every member present, `null` when the request has
/// none of it.
pub fn shown(request: &AuthRequest) -> Value {
    json!({
        "client_name": request.client_name,
        "binding_message": request.binding_message,
        "scope": request.scope,
        "authorization_details": request.authorization_details,
        "expires_at": request.expires_at,
    })
}

/// `txn_hash`: base64url (no padding) of the SHA-256 of the canonical JSON of `shown`.
pub fn txn_hash(shown: &Value) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(jcs::canonicalize(shown).as_bytes()))
}

/// base64url SHA-256 of a text (of the decision JWS, in the ID token's `txn_approval`).
pub fn sha256(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// The one line the push carries about the transaction, when the request has
/// `authorization_details`: "Pay 50.00 GBP to Savings Ltd" for a payment, the description of a
/// generic entry, "and N more" for further entries. Cut to `SUMMARY_MAX_CHARS` on a character
/// boundary. The device fetches the whole details before the user can decide.
pub fn summary(details: Option<&Value>) -> Option<String> {
    let entries = details?.as_array().filter(|e| !e.is_empty())?;
    let mut line = describe(&entries[0]);
    if entries.len() > 1 {
        line.push_str(&format!(" and {} more", entries.len() - 1));
    }
    if line.chars().count() > SUMMARY_MAX_CHARS {
        line = line.chars().take(SUMMARY_MAX_CHARS - 1).collect::<String>() + "…";
    }
    Some(line)
}

fn describe(entry: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match entry["type"].as_str() {
        Some("payment_initiation") => {
            let amount = &entry["instructedAmount"];
            format!(
                "Pay {} {} to {}",
                text(&amount["amount"]),
                text(&amount["currency"]),
                text(&entry["creditorName"])
            )
        }
        Some("generic") => text(&entry["description"]),
        Some(other) => format!("Approve {other}"),
        None => "Approve a transaction".into(),
    }
}

/// The ID token's (and introspection's, and a JWT access token's) `txn_approval` claim: what the
/// RP needs to check later which device approved what, without the device's JWS itself. The RP
/// recomputes `txn_hash` from what it sent (its client name, binding message, scope,
/// `authorization_details`) and `expires_at`; `decision_hash` is the SHA-256 of the JWS the OP
/// keeps (`ciba-admin evidence` prints and verifies it); `device_jkt` is the RFC 7638 thumbprint
/// of the key that signed it.
pub fn approval_claim(request: &AuthRequest, evidence: &Evidence) -> Value {
    let mut claim = json!({
        "expires_at": request.expires_at,
        "decision_hash": sha256(&evidence.decision_jws),
        "device_jkt": evidence.device_jkt,
    });
    if let Some(hash) = &evidence.txn_hash {
        claim["txn_hash"] = hash.as_str().into();
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryMode, Status};

    fn request(details: Option<Value>) -> AuthRequest {
        AuthRequest {
            auth_req_id: "t.x".into(),
            txn: "t".into(),
            client_id: "rp".into(),
            client_name: Some("Demo Bank".into()),
            sub: "alice".into(),
            scope: "openid".into(),
            acr_values: None,
            binding_message: Some("W4SCT".into()),
            client_notification_token: None,
            delivery_mode: DeliveryMode::Poll,
            created_at: 1_700_000_000,
            expires_at: 1_700_000_120,
            interval: 5,
            last_poll_ms: None,
            status: Status::Pending,
            decided_at: None,
            notified_at: None,
            authorization_details: details,
            evidence: None,
        }
    }

    fn payment(amount: &str) -> Value {
        json!([{"type": "payment_initiation",
            "instructedAmount": {"currency": "GBP", "amount": amount},
            "creditorName": "Savings Ltd", "creditorAccount": {"iban": "GB29NWBK60161331926819"}}])
    }

    #[test]
    fn the_shown_object_has_every_member_and_hashes_its_canonical_form() {
        let shown = shown(&request(None));
        assert_eq!(
            jcs::canonicalize(&shown),
            r#"{"authorization_details":null,"binding_message":"W4SCT","client_name":"Demo Bank","expires_at":1700000120,"scope":"openid"}"#
        );
        // The SHA-256 of exactly that text, as `printf %s '…' | sha256sum | xxd -r -p | base64`
        // gives it.
        assert_eq!(
            txn_hash(&shown),
            "sCykQKxZJYE38eUW52sqlKeIuTVJPWu2fGBauPY0HPM"
        );
    }

    #[test]
    fn another_amount_is_another_hash_and_member_order_is_not() {
        let a = txn_hash(&shown(&request(Some(payment("50.00")))));
        let b = txn_hash(&shown(&request(Some(payment("5000.00")))));
        assert_ne!(a, b);
        let reordered: Value = serde_json::from_str(&format!(
            r#"{{"expires_at":1700000120,"scope":"openid","authorization_details":{},"client_name":"Demo Bank","binding_message":"W4SCT"}}"#,
            payment("50.00")
        ))
        .unwrap();
        assert_eq!(txn_hash(&reordered), a);
    }

    #[test]
    fn the_summary_names_the_payment_and_stays_one_short_line() {
        assert_eq!(
            summary(Some(&payment("50.00"))).as_deref(),
            Some("Pay 50.00 GBP to Savings Ltd")
        );
        let two = json!([payment("1")[0], {"type": "generic", "description": "Share statements"}]);
        assert_eq!(
            summary(Some(&two)).as_deref(),
            Some("Pay 1 GBP to Savings Ltd and 1 more")
        );
        let long = json!([{"type": "generic", "description": "é".repeat(200)}]);
        let line = summary(Some(&long)).unwrap();
        assert_eq!(line.chars().count(), SUMMARY_MAX_CHARS);
        assert!(line.ends_with('…'));
        assert_eq!(summary(None), None);
    }
}
