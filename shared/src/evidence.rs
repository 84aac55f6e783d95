//! The evidence of a decision, checked again long after it was made (`ciba-admin evidence`,
//! `GET /_local/evidence`): the device's JWS verifies under the key it was enrolled with, that
//! key has the thumbprint the ID token's `txn_approval` names, the JWS names this request's `txn`
//! and the action the request's status records, and its `txn_hash` is the hash of what the
//! request shows. The report carries everything needed to check it by hand again.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::domain::{AuthRequest, Status};
use crate::dpop;
use crate::jose;
use crate::transaction;

/// The report on `request`'s evidence, and whether every check passed. A request without
/// evidence (not decided, or decided before evidence was kept) is `Err`.
pub fn report(request: &AuthRequest) -> Result<(Value, bool), String> {
    let evidence = request.evidence.as_ref().ok_or_else(|| {
        format!(
            "request {} has no decision evidence (status {})",
            request.auth_req_id,
            request.status.as_str()
        )
    })?;
    let shown = transaction::shown(request);
    let expected_hash = transaction::txn_hash(&shown);
    let header = jose::peek_header(&evidence.decision_jws)
        .map(|(alg, kid)| json!({"alg": format!("{alg:?}"), "kid": kid}))
        .unwrap_or(Value::Null);
    let verified = jose::single_key_set(&evidence.device_key)
        .ok_or(jose::JwsError::NoMatchingKey)
        .and_then(|keys| jose::verify(&evidence.decision_jws, &keys, &[Algorithm::ES256]));
    let (signature, claims) = match &verified {
        Ok(v) => (true, Value::Object(v.claims.clone())),
        Err(_) => (false, Value::Null),
    };
    let kid_ok = header["kid"].as_str() == Some(evidence.device_id.as_str());
    let key_ok = dpop::thumbprint(&evidence.device_key).as_deref() == Some(&evidence.device_jkt);
    let txn_ok = claims["txn"].as_str() == Some(request.txn.as_str());
    let action_ok = match claims["action"].as_str() {
        Some("approve") => matches!(request.status, Status::Approved | Status::Redeemed),
        Some("deny") => request.status == Status::Denied,
        _ => false,
    };
    let signed_hash = claims["txn_hash"].as_str();
    // A decision without txn_hash (a request without authorization_details, from a device that
    // does not send one) has nothing to link; one with a hash must match what was shown.
    let hash_ok = signed_hash.is_none_or(|h| h == expected_hash)
        && signed_hash == evidence.txn_hash.as_deref();
    let all = signature && kid_ok && key_ok && txn_ok && action_ok && hash_ok;
    let report = json!({
        "auth_req_id": request.auth_req_id,
        "client_id": request.client_id,
        "sub": request.sub,
        "status": request.status.as_str(),
        "decided_at": request.decided_at,
        "shown": shown,
        "txn_hash": expected_hash,
        "decision": {
            "jws": evidence.decision_jws,
            "header": header,
            "claims": claims,
        },
        "device": {
            "device_id": evidence.device_id,
            "jkt": evidence.device_jkt,
            "public_key": evidence.device_key,
        },
        "txn_approval": transaction::approval_claim(request, evidence),
        "checks": {
            "signature_verifies_under_the_device_key": signature,
            "header_kid_is_the_device": kid_ok,
            "device_key_has_the_thumbprint": key_ok,
            "decision_names_the_txn": txn_ok,
            "action_matches_the_outcome": action_ok,
            "txn_hash_matches_what_was_shown": if signed_hash.is_some() { Value::Bool(hash_ok) } else { Value::Null },
        },
        "verified": all,
    });
    Ok((report, all))
}
