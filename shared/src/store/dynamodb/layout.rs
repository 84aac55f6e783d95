//! Where each item lives: the sort keys and key builders of the item layout (the table in the
//! `dynamodb` module documentation), and how long request items outlive their request.

use std::collections::HashMap;

use super::codec::{Item, s};
use crate::store::JtiUse;

/// How long auth request and txn items outlive the request's expiry before TTL may delete them.
pub(super) const REQUEST_RETENTION_SECS: i64 = 86_400;

pub(super) const SK_CLIENT: &str = "CLIENT";
pub(super) const SK_PROFILE: &str = "PROFILE";
pub(super) const SK_HINT: &str = "HINT";
pub(super) const SK_DEVICE: &str = "DEVICE";
pub(super) const SK_JTI: &str = "JTI";
pub(super) const SK_AUTHREQ: &str = "AUTHREQ";
pub(super) const SK_TXN: &str = "TXN";
pub(super) const SK_TOKEN: &str = "TOKEN";
pub(super) const SK_FAMILY: &str = "FAMILY";
pub(super) const SK_ENROLL: &str = "ENROLL";
pub(super) const SK_SIGNING_KEY: &str = "SIGNING_KEY";
pub(super) const DEVICE_PREFIX: &str = "DEVICE#";

pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn client_pk(client_id: &str) -> String {
    format!("CLIENT#{client_id}")
}

pub(super) fn user_pk(sub: &str) -> String {
    format!("USER#{sub}")
}

/// The key of a login hint, already normalised (`normalize_hint`).
pub(super) fn hint_pk(normalized_hint: &str) -> String {
    format!("HINT#{normalized_hint}")
}

pub(super) fn device_pk(device_id: &str) -> String {
    format!("DEVICE#{device_id}")
}

/// The sort key of a device's copy under its user.
pub(super) fn user_device_sk(device_id: &str) -> String {
    format!("{DEVICE_PREFIX}{device_id}")
}

/// What the key of every auth request item starts with.
pub(super) const AUTHREQ_PREFIX: &str = "AUTHREQ#";

/// The item of a request is stored under its `txn` when its `auth_req_id` starts with it
/// (`<txn>.<secret>`, as bc-authorize mints them): one item that the device's `txn` and the
/// client's `auth_req_id` both find, with no second item to write. Any other id (minted before,
/// or by a test) is stored under itself, with a `TXN#` item pointing at it.
pub(super) fn request_locator(auth_req_id: &str) -> &str {
    auth_req_id
        .split_once('.')
        .map_or(auth_req_id, |(locator, _)| locator)
}

pub(super) fn authreq_pk(auth_req_id: &str) -> String {
    format!("{AUTHREQ_PREFIX}{}", request_locator(auth_req_id))
}

pub(super) fn txn_pk(txn: &str) -> String {
    format!("TXN#{txn}")
}

pub(super) fn enroll_pk(code_hash: &str) -> String {
    format!("ENROLL#{code_hash}")
}

/// Partitions each minute of the expiry index is spread over. A minute's items are written while
/// the requests due in it are created, at the rate requests come in: in one partition, past
/// 1,000 ping or push requests a second that would cross DynamoDB's 1,000 writes per second per
/// partition. Spread over 16, 10,000 a second make 625 writes a second in each; a sweep reads 16
/// partitions (and the unsharded one of before) per minute it covers.
pub(super) const DUE_SHARDS: u32 = 16;

/// The key of the request `auth_req_id`, due in the minute `expires_at` falls in.
pub(super) fn due_pk(expires_at: i64, auth_req_id: &str) -> String {
    due_minute_pk(expires_at.div_euclid(60), due_shard(auth_req_id))
}

/// The key of the requests of one shard due in `minute` (epoch seconds / 60).
pub(super) fn due_minute_pk(minute: i64, shard: u32) -> String {
    format!("DUE#{minute}#{shard}")
}

/// A request's shard of the expiry index: FNV-1a of its id, stable across processes.
fn due_shard(auth_req_id: &str) -> u32 {
    let hash = auth_req_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % DUE_SHARDS
}

/// The item recording the minute the last complete expiry sweep reached (`minute`): every due
/// item of an earlier minute has been handled.
pub(super) const SWEEP_CURSOR_PK: &str = "SWEEP";
pub(super) const SK_SWEEP_CURSOR: &str = "CURSOR";

pub(super) fn token_pk(hash: &str) -> String {
    format!("TOKEN#{hash}")
}

pub(super) fn family_pk(id: &str) -> String {
    format!("FAMILY#{id}")
}

/// The key of an envelope signing key, by its RFC 7638 `kid` (base64url: no `#`).
pub(super) fn signing_key_pk(kid: &str) -> String {
    format!("SIGNING_KEY#{kid}")
}

pub(super) fn jti_pk(jti: &JtiUse) -> String {
    let scope = jti.scope.replace('%', "%25").replace('#', "%23");
    format!("JTI#{scope}#{}", jti.jti)
}

#[cfg(test)]
mod tests {
    use super::{DUE_SHARDS, authreq_pk, due_pk, jti_pk};
    use crate::store::JtiUse;

    #[test]
    fn jti_scope_cannot_spill_into_the_jti() {
        let pk = |scope: &str, jti: &str| {
            jti_pk(&JtiUse {
                scope: scope.into(),
                jti: jti.into(),
                expires_at: 0,
            })
        };
        assert_eq!(pk("c1", "j1"), "JTI#c1#j1");
        assert_ne!(pk("a#b", "c"), pk("a", "b#c"));
        assert_ne!(pk("a%23", "c"), pk("a#", "c"));
    }

    #[test]
    fn minted_ids_are_stored_under_their_txn_and_others_under_themselves() {
        assert_eq!(authreq_pk("t1.secret"), "AUTHREQ#t1");
        assert_eq!(authreq_pk("r1"), "AUTHREQ#r1");
    }

    #[test]
    fn a_minute_of_due_requests_spreads_over_every_shard() {
        let shards: std::collections::HashSet<String> = (0..1000)
            .map(|i| due_pk(120, &format!("request-{i}")))
            .collect();
        assert_eq!(shards.len(), DUE_SHARDS as usize);
        assert!(shards.iter().all(|pk| pk.starts_with("DUE#2#")));
    }
}
