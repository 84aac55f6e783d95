//! The fuzz targets' bodies: each takes the bytes libFuzzer made and hands them to the shared
//! rules the way a handler would. Results are dropped on purpose: any answer, accepted or
//! refused, is fine; only a panic (or a hang) is a finding.
//!
//! The fixtures are the demo ones: the seeded clients of `tests/seed.json` and the key of
//! `demo-fapi` (`tests/keys/demo-fapi-rp.pem`), so a seed made from a real request reaches the
//! rules behind the signature check.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciba_shared::backchannel::{params, request_object};
use ciba_shared::client_auth;
use ciba_shared::config::Config;
use ciba_shared::context::Ctx;
use ciba_shared::domain::{Client, Device};
use ciba_shared::http::Form;
use ciba_shared::jose::{self, Claims};
use ciba_shared::jwt::Expect;
use ciba_shared::ports::{LocalSigner, OsRandom, Signer, SystemClock, SystemResolver};
use ciba_shared::push::{Platform, PushError, PushMessage, PushSender};
use ciba_shared::registration::Metadata;
use ciba_shared::secret;
use ciba_shared::store::dynamodb::stream;
use ciba_shared::store::{Clients, MemoryStore};
use ciba_shared::tokens::{AT_JWT_TYP, presented};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use lambda_http::http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};

/// The clock every target runs at; seeds carry times around it.
const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://op.example.com";
const FAPI_CLIENT: &str = "demo-fapi";
const ALGORITHMS: &[Algorithm] = &[Algorithm::ES256, Algorithm::PS256];

struct Fixtures {
    config: Config,
    clients: Vec<Client>,
    fapi: Client,
    fapi_keys: JwkSet,
    fapi_key: LocalSigner,
    fapi_kid: String,
    store: MemoryStore,
    runtime: tokio::runtime::Runtime,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let seed: Value = serde_json::from_str(include_str!("../../tests/seed.json"))
            .expect("tests/seed.json is JSON");
        let clients: Vec<Client> = seed["clients"]
            .as_array()
            .expect("the seed lists clients")
            .iter()
            .map(|raw| {
                let mut client: Client =
                    serde_json::from_value(raw.clone()).expect("a seeded client reads as a Client");
                client.client_secret_hash = raw["client_secret"].as_str().map(secret::hash);
                client
            })
            .collect();
        let fapi = clients
            .iter()
            .find(|c| c.client_id == FAPI_CLIENT)
            .expect("the seed has demo-fapi")
            .clone();
        let fapi_keys = fapi.jwks.clone().expect("demo-fapi has keys");
        let fapi_kid = fapi_keys.keys[0].common.key_id.clone().unwrap_or_default();
        // Signed through aws-lc, as the OP signs: hundreds of times faster than the p256 crate
        // unoptimised, and every request object input is signed.
        let fapi_key =
            LocalSigner::from_pkcs8_pem(include_str!("../../tests/keys/demo-fapi-rp.pem"))
                .expect("the demo-fapi key is a PKCS#8 P-256 key");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let store = MemoryStore::new();
        for client in &clients {
            runtime
                .block_on(store.put_client(client))
                .expect("the memory store takes the seeded clients");
        }
        Fixtures {
            config: Config::new(ISSUER).expect("the fuzz issuer is valid"),
            clients,
            fapi,
            fapi_keys,
            fapi_key,
            fapi_kid,
            store,
            runtime,
        }
    })
}

/// A compact ES256 JWS over `payload` as it is (not necessarily JSON), signed with the demo-fapi
/// key; its registered `kid` in the header when `with_kid`.
fn signed_by_fapi(payload: &[u8], with_kid: bool) -> String {
    let f = fixtures();
    let header = if with_kid {
        json!({"alg": "ES256", "typ": "JWT", "kid": f.fapi_kid})
    } else {
        json!({"alg": "ES256", "typ": "JWT"})
    };
    let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let signature = f
        .runtime
        .block_on(f.fapi_key.sign(out.as_bytes()))
        .expect("a key in memory signs");
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut out);
    out
}

/// The input as a compact JWS (header and signature checks, against demo-fapi's keys); and, when
/// it is a JSON object, as the claims of a JWT whose signature passed, under each claim policy.
pub fn jws(data: &[u8]) {
    let f = fixtures();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = jose::peek_header(token);
        let _ = jose::verify(token, &f.fapi_keys, ALGORITHMS);
    }
    let Ok(claims) = serde_json::from_slice::<Claims>(data) else {
        return;
    };
    let _ = jose::audiences(&claims);
    for name in ["exp", "iat", "nbf"] {
        let _ = jose::numeric_date(&claims, name);
    }
    let op = |aud: &str| aud == ISSUER;
    let strict = Expect::new("strict", 60)
        .issuer(FAPI_CLIENT)
        .subject(FAPI_CLIENT)
        .audience(&op)
        .expires_within(300)
        .iat_required()
        .nbf_within(3600)
        .jti("fuzz#strict".into());
    let lenient = Expect::new("lenient", 60).jti("fuzz#lenient".into());
    for expect in [strict, lenient, Expect::new("hint", 60).ignore_expiry()] {
        let _ = expect.check(claims.clone(), NOW);
    }
}

/// A request object of demo-fapi: the input itself when it looks like a compact JWS (`ey…`),
/// else the input signed as the payload with demo-fapi's key, so the claims reach the
/// authentication parameters' rules.
pub fn request_object(data: &[u8]) {
    let f = fixtures();
    let token = match std::str::from_utf8(data) {
        Ok(text) if text.starts_with("ey") => text.to_owned(),
        _ => signed_by_fapi(data, true),
    };
    if let Ok((authn, _jti)) = request_object::verify(&token, &f.fapi, &f.config, NOW) {
        let _ = params::validate(authn, &f.fapi, &f.config);
    }
}

/// Client authentication as the token and backchannel endpoints run it: the input's first line
/// is the `Authorization` header's value (none when empty or not a valid header value), the rest
/// the form body, against the seeded clients.
pub fn client_auth(data: &[u8]) {
    let f = fixtures();
    let (line, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    if !line.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(line)
    {
        headers.insert("authorization", value);
    }
    let Ok(form) = Form::parse(body) else {
        return;
    };
    let credentials = client_auth::Credentials {
        headers: &headers,
        form: &form,
        cert: None,
    };
    let _ = f.runtime.block_on(client_auth::authenticate(
        credentials,
        &f.store,
        &f.config,
        NOW,
    ));
}

/// A form body, then the backchannel authentication parameters it carries, checked for each
/// seeded client (poll, private_key_jwt, user_code).
pub fn form(data: &[u8]) {
    let f = fixtures();
    let Ok(form) = Form::parse(data) else {
        return;
    };
    for name in form.names() {
        let _ = form.get(name);
    }
    let authn = params::AuthnParams::from_form(&form);
    for client in &f.clients {
        let _ = params::validate(authn.clone(), client, &f.config);
    }
}

/// A registration request body, as `/register` reads it, for a public and a local OP.
pub fn registration(data: &[u8]) {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for local_op in [false, true] {
        let _ = Metadata::validate(&body, local_op);
    }
}

/// A DynamoDB stream event, as the notifier function receives it.
pub fn stream(data: &[u8]) {
    let Ok(event) = serde_json::from_slice::<aws_lambda_events::event::dynamodb::Event>(data)
    else {
        return;
    };
    let _ = stream::changes(&event);
}

/// A JWK or JWK Set: as a device's key (`p256_public_jwk`, `single_key_set`), as a client's
/// registered `jwks`, and as the keys a signed JWT is verified with (ES256 and PS256).
pub fn jwk(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = jose::p256_public_jwk(&value);
    let mut sets: Vec<JwkSet> = jose::single_key_set(&value).into_iter().collect();
    let mut body = Map::new();
    body.insert("backchannel_token_delivery_mode".into(), "poll".into());
    body.insert(
        "token_endpoint_auth_method".into(),
        "private_key_jwt".into(),
    );
    body.insert("jwks".into(), value.clone());
    let _ = Metadata::validate(&body, false);
    if let Ok(registered) = serde_json::from_value::<JwkSet>(value) {
        sets.push(registered);
    }
    for set in &sets {
        for token in tokens() {
            let _ = jose::verify(token, set, ALGORITHMS);
        }
    }
}

/// One ES256 JWS without `kid` that demo-fapi's key verifies and one PS256 JWS whose signature is 2048 bits of
/// nothing: with them every EC and RSA key a JWK Set holds is tried by the verifier.
fn tokens() -> &'static [String; 2] {
    static TOKENS: OnceLock<[String; 2]> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let claims = json!({"iss": FAPI_CLIENT}).to_string();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "PS256"}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(&claims);
        let signature = URL_SAFE_NO_PAD.encode([0x5a; 256]);
        [
            signed_by_fapi(claims.as_bytes(), false),
            format!("{header}.{payload}.{signature}"),
        ]
    })
}

/// A token presented back at `/userinfo`, `/introspect` or `/revoke`: as it comes (opaque or
/// compact JWS), and as the claims of a JWT access token the OP itself signed, so the claims
/// (`iss`, `jti` of any type and length) are read past the signature check.
pub fn presented_token(data: &[u8]) {
    let f = fixtures();
    let op = op();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = f.runtime.block_on(presented::find(&op.ctx, token));
    }
    let header = json!({"alg": "ES256", "typ": AT_JWT_TYP, "kid": op.ctx.signer.kid()});
    let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(data, &mut jwt);
    let Ok(signature) = f.runtime.block_on(op.ctx.signer.sign(jwt.as_bytes())) else {
        return;
    };
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    let _ = f.runtime.block_on(presented::find(&op.ctx, &jwt));
}

/// An OP over an empty in-memory store, signing with a key of its own.
struct Op {
    ctx: Ctx,
}

fn op() -> &'static Op {
    static OP: OnceLock<Op> = OnceLock::new();
    OP.get_or_init(|| Op {
        ctx: Ctx {
            config: Arc::new(Config::new(ISSUER).expect("the fuzz issuer is valid")),
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            signer: Arc::new(LocalSigner::generate()),
            push: Arc::new(NoPush),
            resolver: Arc::new(SystemResolver),
            keys: None,
        },
    })
}

/// Presented tokens never push.
struct NoPush;

#[async_trait::async_trait]
impl PushSender for NoPush {
    async fn register(&self, _: Platform, _: &str) -> Result<String, PushError> {
        Err(PushError::PlatformNotConfigured)
    }

    async fn send(&self, _: &Device, _: &PushMessage) -> Result<(), PushError> {
        Err(PushError::PlatformNotConfigured)
    }
}
