//! `cargo run`: the local API. Every function's real handler on one port, fed API Gateway v2
//! events, with the in-memory store by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ciba_local::event::HttpRequest;
use ciba_local::options::{self, Options};
use ciba_local::{HostCheck, LOCAL_ROUTES, LocalApi, ROUTES};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use lambda_http::Body;

/// API Gateway's payload limit is 10 MB; nothing here needs more than a few kilobytes.
const MAX_BODY: usize = 1024 * 1024;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

#[tokio::main]
async fn main() -> ExitCode {
    lambda_http::tracing::init_default_subscriber();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args, &|name| std::env::var(name).ok()) {
        Ok(o) => o,
        Err(stop) => return stop.exit("ciba-local"),
    };
    let (api, summary) = match options::build(&options, options::system_clock()).await {
        Ok(built) => built,
        Err(message) => {
            eprintln!("ciba-local: {message}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ciba-local: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "CIBA OP listening on http://{addr} (issuer {})",
        api.ctx.config.issuer
    );
    println!("  store: {}", summary.store);
    let registration = match &options.registration {
        ciba_shared::config::Registration::Open => "open",
        ciba_shared::config::Registration::InitialAccessToken(t) if t.is_empty() => "closed",
        ciba_shared::config::Registration::InitialAccessToken(_) => "initial access token required",
    };
    println!("  registration (POST /register): {registration}");
    for (method, path, what) in ROUTES.iter().chain(LOCAL_ROUTES) {
        println!("  {method:<5} {path:<36} -> {what}");
    }
    println!("  seeded clients: {}", summary.clients.join("; "));
    println!("  seeded users:   {}", summary.users.join("; "));
    let hosts = Arc::new(HostCheck::new(&api.ctx.config.issuer, options.port));
    serve(listener, Arc::new(api), hosts).await;
    ExitCode::SUCCESS
}

async fn serve(listener: tokio::net::TcpListener, api: Arc<LocalApi>, hosts: Arc<HostCheck>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (api, hosts) = (api.clone(), hosts.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (api, hosts) = (api.clone(), hosts.clone());
                async move { Ok::<_, Infallible>(answer(&api, &hosts, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}

async fn answer(
    api: &LocalApi,
    hosts: &HostCheck,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let host = parts.headers.get(hyper::header::HOST);
    if !hosts.admits(host.and_then(|h| h.to_str().ok())) {
        return plain(421, "the Host header does not name this OP");
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return plain(413, "request body too large"),
    };
    let mut request = HttpRequest::new(
        parts.method.as_str(),
        parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    for (name, value) in &parts.headers {
        match value.to_str() {
            Ok(v) => request = request.header(name.as_str(), v),
            Err(_) => return plain(400, "header values must be visible ASCII"),
        }
    }
    request.body = body.to_vec();
    let id = format!("local-{}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
    let now_ms = api.ctx.clock.now_ms();
    let Ok(lambda_request) = request.to_lambda(&id, now_ms) else {
        return plain(
            400,
            "the request cannot be represented as an API Gateway event",
        );
    };
    let response = api.handle(lambda_request).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

fn plain(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({"error": "invalid_request", "error_description": message});
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
