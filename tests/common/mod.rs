//! The end-to-end harness: the local API (every real handler, fed API Gateway v2 events) over a
//! fixed clock, seeded from `tests/seed.json`, on the in-memory store or DynamoDB Local.

#![allow(dead_code)]

pub mod callback;
pub mod emulator;
pub mod fault_proxy;
pub mod tls;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciba_local::LocalApi;
use ciba_local::event::HttpRequest;
use ciba_local::local_notify::{LocalNotifier, NotifyingStore};
use ciba_shared::callback_policy::AddressPolicy;
use ciba_shared::config::Config;
use ciba_shared::context::Ctx;
use ciba_shared::jose;
use ciba_shared::notify::{HttpCallbackSender, Notifier, NotifierSettings};
use ciba_shared::op_secret::Keys;
use ciba_shared::ports::{LocalSigner, OsRandom, Random, Signer};
use ciba_shared::push::PushSender;
use ciba_shared::secret::Secret;
use ciba_shared::store::{MemoryStore, Store};
use ciba_testkit::RecordingPushSender;
use ciba_testkit::seed::Seed;
use ciba_testkit::{FixedClock, StaticResolver};
use lambda_http::Body;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use std::time::Duration;

pub const ISSUER: &str = "https://op.example.com";
pub use ciba_shared::protocol::CIBA_GRANT;
pub const T0: i64 = 1_800_000_000;

/// The keys of the tests' OP secret, which the seed's user codes are hashed under.
pub fn keys() -> Arc<Keys> {
    Arc::new(Keys::derive(&Secret::new("test-op-secret-0123456789abcdef-0123")).unwrap())
}

/// Runs each named scenario twice: on the in-memory store and on DynamoDB Local.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::common::Harness::memory().await).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(harness) = super::common::Harness::dynamodb().await else { return };
                    super::$scenario(harness).await;
                }
            )*
        }
    };
}

pub fn key(name: &str) -> SigningKey {
    let path = format!("{}/tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    SigningKey::from_pkcs8_pem(&pem).unwrap()
}

pub fn seed() -> Seed {
    let path = format!("{}/tests/seed.json", env!("CARGO_MANIFEST_DIR"));
    Seed::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: lambda_http::http::HeaderMap,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, code),
            "{:?}",
            self.body
        );
        let keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["error", "error_description"],
            "error body is exactly error + description"
        );
    }
}

pub struct Harness {
    pub api: Arc<LocalApi>,
    pub clock: Arc<FixedClock>,
    pub store: Arc<dyn Store>,
    pub pushes: Arc<RecordingPushSender>,
    pub notifier: Arc<LocalNotifier>,
}

impl Harness {
    pub async fn memory() -> Self {
        Self::with_store(Arc::new(MemoryStore::new())).await
    }

    pub async fn dynamodb() -> Option<Self> {
        let store = ciba_testkit::dynamodb::store_from_env().await?;
        Some(Self::with_store(store).await)
    }

    pub async fn with_store(store: Arc<dyn Store>) -> Self {
        Self::with_push(store, None).await
    }

    /// A harness whose pushes go to `push` instead of the recording sender.
    pub async fn with_push(store: Arc<dyn Store>, push: Option<Arc<dyn PushSender>>) -> Self {
        Self::with_ports(store, push, None).await
    }

    /// A harness whose pushes go to `push` and whose tokens `signer` signs, where given (else
    /// the recording sender and a fresh local key).
    pub async fn with_ports(
        store: Arc<dyn Store>,
        push: Option<Arc<dyn PushSender>>,
        signer: Option<Arc<dyn Signer>>,
    ) -> Self {
        let keys = keys();
        seed().import(store.as_ref(), &keys, T0).await.unwrap();
        let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
        let store: Arc<dyn Store> = Arc::new(NotifyingStore::new(store, changes));
        let clock = Arc::new(FixedClock::at_secs(T0));
        let pushes = Arc::new(RecordingPushSender::default());
        let push: Arc<dyn PushSender> = push.unwrap_or_else(|| pushes.clone());
        // The demo CA issues the certificates of tls_client_auth clients (MTLS_CLIENT_CA_CERTS).
        let mut config = Config::new(ISSUER).unwrap();
        let demo_ca = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/pki/demo-ca.crt"
        ))
        .unwrap();
        config.mtls_client_cas = ciba_shared::client_ca::ClientCas::parse(&demo_ca).unwrap();
        config.acr_values_supported = vec!["urn:example:acr:device".into()];
        let ctx = Ctx {
            config: Arc::new(config),
            store: store.clone(),
            clock: clock.clone(),
            random: Arc::new(OsRandom),
            signer: signer.unwrap_or_else(|| Arc::new(LocalSigner::generate())),
            push,
            resolver: Arc::new(StaticResolver::default()),
            keys: Some(keys.clone()),
        };
        // The RPs of these tests listen on loopback: delivered to as an OP that runs locally
        // delivers (`tests/delivery.rs` checks the public OP's refusal).
        let callback =
            HttpCallbackSender::new(Duration::from_secs(5), AddressPolicy::AllowLoopback).unwrap();
        let notifier = Notifier {
            ctx: ctx.clone(),
            callback: Arc::new(callback),
            settings: NotifierSettings {
                attempts: 3,
                first_retry: Duration::from_millis(20),
                push_token_key: keys.push_token.clone(),
            },
        };
        // Tests sweep expiries themselves (`notifier.sweep()`), after moving the clock.
        let notifier = LocalNotifier::spawn(notifier, changed, Duration::from_secs(3600));
        let api = Arc::new(LocalApi::new(ctx, pushes.clone()).with_notifier(notifier.clone()));
        Self {
            api,
            clock,
            store,
            pushes,
            notifier,
        }
    }

    pub fn now(&self) -> i64 {
        ciba_shared::ports::Clock::now(self.clock.as_ref())
    }

    pub async fn send(&self, req: HttpRequest) -> Reply {
        send(&self.api, req, self.clock.as_ref()).await
    }

    pub fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    /// POST /bc-authorize as demo-rp (client_secret_basic) with form parameters.
    pub async fn bc_authorize(&self, params: &[(&str, &str)]) -> Reply {
        let req = HttpRequest::new("POST", "/bc-authorize")
            .header("authorization", &Self::basic("demo-rp", "demo-rp-secret"))
            .form(params);
        self.send(req).await
    }

    /// POST /token with the CIBA grant as demo-rp.
    pub async fn poll(&self, auth_req_id: &str) -> Reply {
        self.poll_as("demo-rp", "demo-rp-secret", auth_req_id).await
    }

    pub async fn poll_as(&self, id: &str, secret: &str, auth_req_id: &str) -> Reply {
        let req = HttpRequest::new("POST", "/token")
            .header("authorization", &Self::basic(id, secret))
            .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)]);
        self.send(req).await
    }

    /// A private_key_jwt client assertion of demo-fapi.
    pub fn client_assertion(&self) -> String {
        let now = self.now();
        jose::sign_with_key(
            &key("demo-fapi-rp"),
            &json!({"alg": "ES256", "typ": "JWT"}),
            &json!({
                "iss": "demo-fapi", "sub": "demo-fapi", "aud": format!("{ISSUER}/token"),
                "iat": now, "exp": now + 60, "jti": OsRandom.token(12)
            }),
        )
    }

    /// Valid request-object claims of demo-fapi for alice; tests break one rule at a time.
    pub fn request_claims(&self) -> Value {
        let now = self.now();
        json!({
            "iss": "demo-fapi",
            "aud": ISSUER,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": OsRandom.token(12),
            "scope": "openid profile email",
            "login_hint": "alice@example.com",
            "binding_message": "Order 1234: pay 12.50 EUR",
            "acr_values": "urn:example:acr:device",
            "requested_expiry": 300,
        })
    }

    pub fn sign_request(&self, claims: &Value) -> String {
        jose::sign_with_key(
            &key("demo-fapi-rp"),
            &json!({"alg": "ES256", "typ": "oauth-authz-req+jwt"}),
            claims,
        )
    }

    /// POST /bc-authorize as demo-fapi with a request object and a client assertion.
    pub async fn bc_authorize_signed(&self, request_object: &str) -> Reply {
        let assertion = self.client_assertion();
        let req = HttpRequest::new("POST", "/bc-authorize").form(&[
            ("request", request_object),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ]);
        self.send(req).await
    }

    pub async fn poll_signed(&self, auth_req_id: &str) -> Reply {
        let assertion = self.client_assertion();
        let req = HttpRequest::new("POST", "/token").form(&[
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", auth_req_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ]);
        self.send(req).await
    }

    /// The `txn` of the latest push to a user's devices.
    pub fn latest_txn(&self, sub: &str) -> String {
        let pushes = self.pushes.sent_to(sub);
        pushes.last().expect("a push was sent").message.txn.clone()
    }

    pub fn decision(&self, device_key: &str, device_id: &str, txn: &str, action: &str) -> String {
        self.device_jws(device_key, device_id, json!({"txn": txn, "action": action}))
    }

    /// A device's JWS of `claims` with a fresh `iat`, `exp` (2 minutes) and `jti`.
    pub fn device_jws(&self, device_key: &str, device_id: &str, mut claims: Value) -> String {
        let now = self.now();
        claims["iat"] = now.into();
        claims["exp"] = (now + 120).into();
        if claims.get("jti").is_none() {
            claims["jti"] = OsRandom.token(12).into();
        }
        jose::sign_with_key(
            &key(device_key),
            &json!({"alg": "ES256", "typ": "JWT", "kid": device_id}),
            &claims,
        )
    }

    /// `POST /device/transaction` by a device for `txn`: what it shows.
    pub async fn transaction(&self, device_key: &str, device_id: &str, txn: &str) -> Reply {
        let jwt = self.device_jws(device_key, device_id, json!({"txn": txn}));
        let req = HttpRequest::new("POST", "/device/transaction").body("application/jwt", jwt);
        self.send(req).await
    }

    pub async fn post_decision(&self, jwt: &str) -> Reply {
        let req = HttpRequest::new("POST", "/device/decision").body("application/jwt", jwt);
        self.send(req).await
    }

    /// Alice's phone decides the latest request pushed to her, as an app does: it fetches what
    /// the request shows and signs its `txn_hash` (when the fetch is refused, an expired or
    /// decided request, it decides without one, and the decision endpoint answers why).
    pub async fn alice_decides(&self, action: &str) -> Reply {
        let txn = self.latest_txn("user-alice");
        let shown = self.transaction("alice-phone", "alice-phone", &txn).await;
        let mut claims = json!({"txn": txn, "action": action});
        if shown.status == 200 {
            claims["txn_hash"] = ciba_shared::transaction::txn_hash(&shown.body["shown"]).into();
        }
        let jwt = self.device_jws("alice-phone", "alice-phone", claims);
        self.post_decision(&jwt).await
    }

    pub async fn userinfo(&self, access_token: &str) -> Reply {
        let req = HttpRequest::new("GET", "/userinfo")
            .header("authorization", &format!("Bearer {access_token}"));
        self.send(req).await
    }

    /// POST /device/register with a fresh or given key.
    pub async fn enroll(
        &self,
        code: &str,
        key: &SigningKey,
        push_token: &str,
        platform: &str,
    ) -> Reply {
        let (_, jwk) =
            ciba_shared::ports::public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
        let body = json!({
            "enrollment_code": code,
            "public_key": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]},
            "push_token": push_token,
            "platform": platform,
        });
        self.register_raw(&body).await
    }

    pub async fn register_raw(&self, body: &Value) -> Reply {
        let req =
            HttpRequest::new("POST", "/device/register").body("application/json", body.to_string());
        self.send(req).await
    }

    pub async fn jwks(&self) -> Value {
        self.send(HttpRequest::new("GET", "/jwks")).await.body
    }
}

/// `h` with its configuration changed by `change` (same store, clock and pushes).
pub fn reconfigured(h: Harness, change: impl FnOnce(&mut Config)) -> Harness {
    let mut config = (*h.api.ctx.config).clone();
    change(&mut config);
    let mut ctx = h.api.ctx.clone();
    ctx.config = Arc::new(config);
    let api = Arc::new(LocalApi::new(ctx, h.pushes.clone()));
    Harness { api, ..h }
}

pub async fn send(api: &LocalApi, req: HttpRequest, clock: &FixedClock) -> Reply {
    let lambda = req
        .to_lambda("test", ciba_shared::ports::Clock::now_ms(clock))
        .expect("a valid API Gateway event");
    let response = api.handle(lambda).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::String(t.clone())),
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    Reply {
        status,
        body,
        headers,
    }
}
