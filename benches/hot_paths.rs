//! Micro benchmarks of the OP's hot paths (issue 6), on the in-memory store and a fixed clock:
//!
//! - `request_object/verify`: a demo-fapi ES256 request object (`backchannel::request_object::verify`);
//! - `client_auth/basic`: demo-rp's `client_secret_basic` (`client_auth::authenticate`);
//! - `tokens/mint`: access, refresh and ES256 ID token (`tokens::mint` with `LocalSigner`);
//! - `handler/bc_authorize`: a whole `bc_authorize::handle` (demo-rp, login_hint alice);
//! - `handler/token_pending`: a `token::handle` poll answering `authorization_pending`.
//!
//! `cargo bench --bench hot_paths -- --quick` keeps a run short; `bench/report.sh` reads the
//! medians from `target/criterion/*/*/new/estimates.json`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciba_local::LocalApi;
use ciba_local::event::HttpRequest;
use ciba_shared::config::Config;
use ciba_shared::context::Ctx;
use ciba_shared::domain::AccessTokenFormat;
use ciba_shared::http::Form;
use ciba_shared::jose;
use ciba_shared::op_secret::Keys;
use ciba_shared::ports::{Clock, LocalSigner, OsRandom, Random};
use ciba_shared::protocol::CIBA_GRANT;
use ciba_shared::push::PushSender;
use ciba_shared::secret::Secret;
use ciba_shared::store::{MemoryStore, Store};
use ciba_shared::tokens::{self, Grant, TokenValues};
use ciba_testkit::FixedClock;
use ciba_testkit::RecordingPushSender;
use ciba_testkit::StaticResolver;
use ciba_testkit::seed::Seed;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_http::{Body, Request};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;
use tokio::runtime::Runtime;

const ISSUER: &str = "https://op.example.com";

const T0: i64 = 1_800_000_000;

fn key(name: &str) -> SigningKey {
    let path = format!("{}/tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    SigningKey::from_pkcs8_pem(&pem).expect("a PKCS#8 P-256 key")
}

fn seed() -> Seed {
    let path = format!("{}/tests/seed.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Seed::from_json(&text).expect("a valid seed")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// The local API over a seeded in-memory store and a clock fixed at `T0`, as the tests build it
/// (without the local notifier: in AWS, notifications run in their own function).
struct Bench {
    api: LocalApi,
    clock: Arc<FixedClock>,
}

impl Bench {
    fn new(rt: &Runtime) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let keys = Arc::new(
            Keys::derive(&Secret::new("bench-op-secret-0123456789abcdef")).expect("a long secret"),
        );
        rt.block_on(seed().import(store.as_ref(), &keys, T0))
            .expect("seeding the store");
        let clock = Arc::new(FixedClock::at_secs(T0));
        let pushes = Arc::new(RecordingPushSender::default());
        let push: Arc<dyn PushSender> = pushes.clone();
        let ctx = Ctx {
            config: Arc::new(Config {
                // Every iteration files another pending request for alice: the limit guards
                // users against RPs, not the benchmark against itself.
                pending_limit: ciba_shared::store::PendingLimit::NONE,
                ..Config::new(ISSUER).expect("a valid issuer")
            }),
            store,
            clock: clock.clone(),
            random: Arc::new(OsRandom),
            signer: Arc::new(LocalSigner::generate()),
            push,
            resolver: Arc::new(StaticResolver::default()),
            keys: Some(keys),
        };
        Self {
            api: LocalApi::new(ctx, pushes),
            clock,
        }
    }

    fn lambda(&self, req: HttpRequest) -> Request {
        req.to_lambda("bench", self.clock.now_ms())
            .expect("a valid API Gateway event")
    }

    fn bc_authorize_request(&self) -> Request {
        self.lambda(
            HttpRequest::new("POST", "/bc-authorize")
                .header("authorization", &basic("demo-rp", "demo-rp-secret"))
                .form(&[
                    ("scope", "openid email profile"),
                    ("login_hint", "alice"),
                    ("binding_message", "W4SCT"),
                ]),
        )
    }

    fn poll_request(&self, auth_req_id: &str) -> Request {
        self.lambda(
            HttpRequest::new("POST", "/token")
                .header("authorization", &basic("demo-rp", "demo-rp-secret"))
                .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)]),
        )
    }

    /// A new pending request of demo-rp for alice; answers its `auth_req_id`.
    fn new_auth_request(&self, rt: &Runtime) -> String {
        let response = rt.block_on(bc_authorize::handle(
            &self.api.ctx,
            self.bc_authorize_request(),
        ));
        assert_eq!(response.status().as_u16(), 200, "{:?}", response.body());
        let Body::Text(text) = response.body() else {
            panic!("bc-authorize answered no JSON");
        };
        let ack: serde_json::Value = serde_json::from_str(text).expect("JSON");
        ack["auth_req_id"].as_str().expect("auth_req_id").to_owned()
    }
}

fn request_object(c: &mut Criterion) {
    let rt = runtime();
    let bench = Bench::new(&rt);
    let client = rt
        .block_on(bench.api.ctx.store.clients().get_client("demo-fapi"))
        .expect("store")
        .expect("demo-fapi is seeded");
    let now = T0;
    let jwt = jose::sign_with_key(
        &key("demo-fapi-rp"),
        &json!({"alg": "ES256", "typ": "oauth-authz-req+jwt"}),
        &json!({
            "iss": "demo-fapi", "aud": ISSUER, "iat": now, "nbf": now, "exp": now + 300,
            "jti": OsRandom.token(12), "scope": "openid profile email",
            "login_hint": "alice@example.com", "binding_message": "Order 1234: pay 12.50 EUR",
            "acr_values": "urn:example:acr:device", "requested_expiry": 300,
        }),
    );
    let config = bench.api.ctx.config.clone();
    ciba_shared::backchannel::request_object::verify(&jwt, &client, &config, now)
        .expect("the request object verifies");
    c.bench_function("request_object/verify", |b| {
        b.iter(|| ciba_shared::backchannel::request_object::verify(&jwt, &client, &config, now))
    });
}

fn client_auth(c: &mut Criterion) {
    let rt = runtime();
    let bench = Bench::new(&rt);
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&basic("demo-rp", "demo-rp-secret")).expect("header"),
    );
    let form = Form::parse(b"grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba").expect("form");
    let ctx = &bench.api.ctx;
    let authenticate = || {
        let credentials = ciba_shared::client_auth::Credentials {
            headers: &headers,
            form: &form,
            cert: None,
        };
        ciba_shared::client_auth::authenticate(credentials, ctx.store.as_ref(), &ctx.config, T0)
    };
    rt.block_on(authenticate()).expect("demo-rp authenticates");
    c.bench_function("client_auth/basic", |b| {
        b.iter(|| rt.block_on(authenticate()))
    });
}

fn id_token(c: &mut Criterion) {
    let rt = runtime();
    let config = Config::new(ISSUER).expect("a valid issuer");
    let signer = LocalSigner::generate();
    let grant = Grant {
        approval: None,
        client_id: "demo-rp".into(),
        sub: "user-alice".into(),
        scope: "openid email profile".into(),
        auth_req_id: OsRandom.token(24),
        auth_time: T0,
        acr: Some("urn:example:acr:device".into()),
        issued_at: T0,
        family_expires_at: T0 + config.refresh_family_lifetime,
        format: AccessTokenFormat::Opaque,
        binding: Default::default(),
        authorization_details: None,
    };
    c.bench_function("tokens/mint", |b| {
        b.iter(|| {
            rt.block_on(tokens::mint(
                &grant,
                TokenValues::random(&OsRandom),
                &config,
                &signer,
                T0,
            ))
            .expect("minted")
        })
    });
}

fn handlers(c: &mut Criterion) {
    let rt = runtime();
    let bench = Bench::new(&rt);
    let ctx = &bench.api.ctx;
    let mut group = c.benchmark_group("handler");
    group.bench_function("bc_authorize", |b| {
        b.iter_batched(
            || bench.bc_authorize_request(),
            |req| {
                let response = rt.block_on(bc_authorize::handle(ctx, req));
                debug_assert_eq!(response.status().as_u16(), 200);
                response
            },
            BatchSize::SmallInput,
        )
    });
    // Every poll is the first of its request, so none is early (`slow_down`).
    let first = bench.new_auth_request(&rt);
    let reply = rt.block_on(token::handle(ctx, bench.poll_request(&first)));
    assert_eq!(reply.status().as_u16(), 400, "{:?}", reply.body());
    group.bench_function("token_pending", |b| {
        b.iter_batched(
            || {
                let id = bench.new_auth_request(&rt);
                bench.poll_request(&id)
            },
            |req| {
                let response = rt.block_on(token::handle(ctx, req));
                debug_assert_eq!(response.status().as_u16(), 400);
                response
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = request_object, client_auth, id_token, handlers
}
criterion_main!(benches);
