//! The local API: every function's real handler behind one port, fed the same API Gateway HTTP
//! API (payload 2.0) events that AWS would send, plus the operator and device tooling.

pub mod authenticator;
pub mod cli;
pub mod client;
pub mod dynamo;
pub mod event;
pub mod local_notify;
pub mod options;
pub mod server;
pub mod tls;

use std::sync::Arc;

use crate::local_notify::LocalNotifier;
use ciba_shared::context::Ctx;
use ciba_shared::error::{DeviceError, RouteError, error_response};
use ciba_shared::http::json_response;
use ciba_shared::store::memory::DEFAULT_REQUEST_RETENTION_SECS;
use ciba_testkit::RecordingPushSender;
use ciba_testkit::enrollment::{self, IssueError};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

/// The routes of `template.yaml`: method, path, function.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/.well-known/openid-configuration", "discovery"),
    ("GET", "/jwks", "jwks"),
    ("POST", "/register", "register"),
    ("POST", "/bc-authorize", "bc-authorize"),
    ("POST", "/token", "token"),
    ("POST", "/introspect", "introspect"),
    ("POST", "/revoke", "revoke"),
    ("GET", "/userinfo", "userinfo"),
    ("POST", "/userinfo", "userinfo"),
    ("POST", "/device/register", "device-register"),
    ("POST", "/device/decision", "device-decision"),
    ("POST", "/device/transaction", "device-transaction"),
];

/// The local API's own routes, which AWS does not have: method, path, what it answers. Printed at
/// start beside `ROUTES`.
pub const LOCAL_ROUTES: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/_local/pushes",
        "pushes sent, oldest first (?user=<login hint>&device=<device id>&binding_message=M&limit=N, each optional)",
    ),
    (
        "GET",
        "/_local/evidence",
        "the evidence of a decision, verified (?auth_req_id=ID; ciba-admin evidence --api)",
    ),
    (
        "GET",
        "/_local/authenticator",
        "the browser authenticator: enrol this browser as a device, approve or deny",
    ),
    (
        "GET",
        "/_local/dead-letters",
        "ping/push notifications given up on, with the reason",
    ),
    (
        "POST",
        "/_local/enrollment-codes",
        "issue an enrolment code ({\"user\": <sub or hint>, \"ttl\": s})",
    ),
];

/// Every function's handler over one context, as each Lambda would hold it after a cold start.
pub struct LocalApi {
    pub ctx: Ctx,
    pub pushes: Arc<RecordingPushSender>,
    pub notifier: Option<Arc<LocalNotifier>>,
    /// Whether `/_local/*` is served (not over a DynamoDB store unless asked for).
    local_endpoints: bool,
    /// Seconds the push of an expired request stays listed at `/_local/pushes`.
    request_retention: i64,
    metadata: Value,
    key_set: Value,
}

impl LocalApi {
    /// `ctx.push` should be `pushes`, so `/_local/pushes` sees what bc-authorize sent.
    pub fn new(ctx: Ctx, pushes: Arc<RecordingPushSender>) -> Self {
        let metadata = discovery::metadata(&ctx.config);
        let key_set = jwks::key_set(ctx.signer.as_ref());
        Self {
            ctx,
            pushes,
            notifier: None,
            local_endpoints: true,
            request_retention: DEFAULT_REQUEST_RETENTION_SECS,
            metadata,
            key_set,
        }
    }

    /// Ping and push notifications run in-process through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<LocalNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Pushes leave `/_local/pushes` `seconds` after their request expired.
    pub fn with_request_retention(mut self, seconds: i64) -> Self {
        self.request_retention = seconds;
        self
    }

    /// No `/_local/*` endpoints: for a store other processes share (a DynamoDB table), where
    /// they would let anyone who reaches the port issue enrolment codes into it.
    pub fn without_local_endpoints(mut self) -> Self {
        self.local_endpoints = false;
        self
    }

    /// Routes a request (as built from an API Gateway event) to its function's handler.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.raw_http_path().to_owned();
        let path = if path.is_empty() {
            req.uri().path().to_owned()
        } else {
            path
        };
        let method = req.method().clone();
        let function = ROUTES
            .iter()
            .find(|(m, p, _)| *p == path && *m == method.as_str())
            .map(|(_, _, f)| *f);
        match function {
            Some("discovery") => discovery::handle(&self.metadata),
            Some("jwks") => jwks::handle(&self.key_set),
            Some("bc-authorize") => {
                // Pushes are recorded here only, so here is where the old ones are forgotten.
                let cutoff = self.ctx.clock.now() - self.request_retention;
                self.pushes.forget_expired_before(cutoff);
                bc_authorize::handle(&self.ctx, req).await
            }
            Some("register") => register::handle(&self.ctx, req).await,
            Some("token") => token::handle(&self.ctx, req).await,
            Some("introspect") => introspect::handle(&self.ctx, req).await,
            Some("revoke") => revoke::handle(&self.ctx, req).await,
            Some("userinfo") => userinfo::handle(&self.ctx, req).await,
            Some("device-register") => device_register::handle(&self.ctx, req).await,
            Some("device-decision") => device_decision::handle(&self.ctx, req).await,
            Some("device-transaction") => device_transaction::handle(&self.ctx, req).await,
            _ if path.starts_with("/_local/") && !self.local_endpoints => {
                error_response(&RouteError::NotFound)
            }
            _ if path == "/_local/pushes" && method == Method::GET => self.pushes_for(&req).await,
            _ if path == "/_local/dead-letters" && method == Method::GET => {
                let dead = self
                    .notifier
                    .as_ref()
                    .map(|n| n.dead_letters())
                    .unwrap_or_default();
                json_response(StatusCode::OK, &dead, true)
            }
            _ if path == "/_local/enrollment-codes" && method == Method::POST => {
                self.issue_enrollment_code(&req).await
            }
            _ if path == "/_local/evidence" && method == Method::GET => self.evidence(&req).await,
            _ if path == "/_local/authenticator" && method == Method::GET => {
                authenticator::page(authenticator::Asset::Page)
            }
            _ if path == "/_local/authenticator.js" && method == Method::GET => {
                authenticator::page(authenticator::Asset::Script)
            }
            _ if ROUTES.iter().any(|(_, p, _)| *p == path) => {
                error_response(&RouteError::MethodNotAllowed("method not allowed"))
            }
            _ => error_response(&RouteError::NotFound),
        }
    }

    /// `POST /_local/enrollment-codes` with `{"user": <sub or login hint>, "ttl": seconds}`: the
    /// operator tooling's enrolment code, for the in-memory store only this process can reach.
    async fn issue_enrollment_code(&self, req: &Request) -> Response<Body> {
        // JSON only: a page in the developer's browser can send text/plain to a loopback port
        // without a CORS preflight, never application/json.
        let json = req
            .headers()
            .get(lambda_http::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return error_response(&DeviceError::InvalidRequest(
                "the body must be application/json".into(),
            ));
        }
        let body: Value =
            serde_json::from_slice(ciba_shared::http::body_bytes(req)).unwrap_or_default();
        let Some(user) = body.get("user").and_then(Value::as_str) else {
            return error_response(&DeviceError::InvalidRequest("user is required".into()));
        };
        let ttl = match body.get("ttl") {
            None => 600,
            Some(ttl) => match ttl
                .as_i64()
                .filter(|t| (1..=enrollment::MAX_TTL).contains(t))
            {
                Some(ttl) => ttl,
                None => {
                    return error_response(&DeviceError::InvalidRequest(
                        format!(
                            "ttl must be whole seconds from 1 to {}",
                            enrollment::MAX_TTL
                        )
                        .into(),
                    ));
                }
            },
        };
        let now = self.ctx.clock.now();
        match enrollment::issue(
            self.ctx.store.as_ref(),
            self.ctx.random.as_ref(),
            user,
            None,
            ttl,
            now,
        )
        .await
        {
            Ok((code, record)) => json_response(
                StatusCode::CREATED,
                &serde_json::json!({
                    "enrollment_code": code.expose(),
                    "sub": record.sub,
                    "expires_at": record.expires_at,
                }),
                true,
            ),
            Err(IssueError::UnknownUser) => {
                error_response(&DeviceError::InvalidRequest("unknown user".into()))
            }
            Err(IssueError::Store(e)) => error_response(&DeviceError::from(e)),
        }
    }

    /// `GET /_local/evidence?auth_req_id=ID`: `evidence::report` of the request, for
    /// `ciba-admin evidence --api` (the in-memory store is this process's own).
    async fn evidence(&self, req: &Request) -> Response<Body> {
        let query = req.query_string_parameters();
        let Some(id) = query.first("auth_req_id") else {
            return error_response(&DeviceError::InvalidRequest(
                "auth_req_id is required".into(),
            ));
        };
        match self.ctx.store.requests().get_auth_request(id).await {
            Ok(Some(request)) => match ciba_shared::evidence::report(&request) {
                Ok((report, _)) => json_response(StatusCode::OK, &report, true),
                Err(why) => error_response(&DeviceError::InvalidRequest(why.into())),
            },
            Ok(None) => error_response(&DeviceError::InvalidRequest("unknown auth_req_id".into())),
            Err(e) => error_response(&DeviceError::from(e)),
        }
    }

    /// `GET /_local/pushes?user=<login hint>[&device=<device id>][&binding_message=M][&limit=N]`:
    /// what was pushed to that user's devices (to that device, carrying that binding message),
    /// oldest first.
    async fn pushes_for(&self, req: &Request) -> Response<Body> {
        let query = req.query_string_parameters();
        // `limit=N`: only the newest N, so a script polling a busy user stays cheap.
        let limit = query
            .first("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let binding = query.first("binding_message");
        let device = query.first("device");
        let pushes = match query.first("user") {
            Some(hint) => match self.ctx.store.accounts().find_user_by_hint(hint).await {
                Ok(Some(user)) => self
                    .pushes
                    .recent_to(Some(&user.sub), device, binding, limit),
                Ok(None) => Vec::new(),
                Err(e) => return error_response(&DeviceError::from(e)),
            },
            None => self.pushes.recent_to(None, device, binding, limit),
        };
        json_response(StatusCode::OK, &pushes, true)
    }
}

/// The `Host` values the local API answers: its issuer's, and this machine's loopback names on
/// the port it listens on. Any other is a page elsewhere whose name was made to resolve to
/// 127.0.0.1 (DNS rebinding), reaching the local API from the developer's browser.
pub struct HostCheck {
    allowed: Vec<String>,
}

impl HostCheck {
    pub fn new(issuer: &str, port: u16) -> Self {
        let mut allowed: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|host| format!("{host}:{port}"))
            .collect();
        if let Ok(url) = url::Url::parse(issuer)
            && let (Some(host), Some(issuer_port)) = (url.host_str(), url.port_or_known_default())
        {
            allowed.push(format!("{host}:{issuer_port}"));
            if url.port().is_none() {
                allowed.push(host.to_owned());
            }
        }
        Self { allowed }
    }

    pub fn admits(&self, host: Option<&str>) -> bool {
        host.is_some_and(|host| {
            let host = host.to_ascii_lowercase();
            self.allowed.contains(&host)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_shared::config::Config;
    use ciba_shared::ports::{Clock, LocalSigner, OsRandom, SystemClock, SystemResolver};
    use ciba_shared::store::MemoryStore;

    #[test]
    fn host_check_admits_the_issuer_and_loopback_names_on_the_port_only() {
        let check = HostCheck::new("http://127.0.0.1:8080", 8080);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(check.admits(Some(host)), "{host}");
        }
        for host in [
            "attacker.example:8080",
            "127.0.0.1:9090",
            "127.0.0.1",
            "",
            "localhost",
        ] {
            assert!(!check.admits(Some(host)), "{host}");
        }
        assert!(!check.admits(None));
        let named = HostCheck::new("http://op.test", 8080);
        assert!(named.admits(Some("op.test")) && named.admits(Some("op.test:80")));
    }

    #[tokio::test]
    async fn local_endpoints_are_not_served_when_turned_off() {
        let api = api().without_local_endpoints();
        for (method, path, _) in LOCAL_ROUTES {
            let request = event::HttpRequest::new(method, path)
                .to_lambda("test", SystemClock.now_ms())
                .unwrap();
            assert_eq!(api.handle(request).await.status(), StatusCode::NOT_FOUND);
        }
    }

    fn api() -> LocalApi {
        let pushes = Arc::new(RecordingPushSender::default());
        let ctx = Ctx {
            config: Arc::new(Config::new("http://127.0.0.1:8080").unwrap()),
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            signer: Arc::new(LocalSigner::generate()),
            push: pushes.clone(),
            resolver: Arc::new(SystemResolver),
            keys: None,
        };
        LocalApi::new(ctx, pushes)
    }

    #[tokio::test]
    async fn every_local_route_printed_at_start_is_served() {
        let api = api();
        for (method, path, _) in LOCAL_ROUTES {
            let request = event::HttpRequest::new(method, path)
                .to_lambda("test", SystemClock.now_ms())
                .unwrap();
            let status = api.handle(request).await.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
        }
    }
}
