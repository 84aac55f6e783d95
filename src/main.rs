//! `cargo run`: the local API. Every function's real handler on one port, fed API Gateway v2
//! events, with the in-memory store by default.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ciba_local::cli::Stop;
use ciba_local::options::{self, Options};
use ciba_local::server::serve;
use ciba_local::{HostCheck, LOCAL_ROUTES, ROUTES, tls};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    lambda_http::tracing::init_default_subscriber();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args, &|name| std::env::var(name).ok()) {
        Ok(o) => o,
        Err(stop) => return stop.exit("ciba-local"),
    };
    // The TLS files are read before anything starts, so a wrong one is a command-line mistake.
    let tls_config = match &options.tls {
        Some(tls) => match tls::server_config(&tls.files) {
            Ok(config) => Some((tls.port, config)),
            Err(mistake) => return Stop::Usage(mistake).exit("ciba-local"),
        },
        None => None,
    };
    let (api, summary) = match options::build(&options, options::system_clock()).await {
        Ok(built) => built,
        Err(message) => {
            eprintln!("ciba-local: {message}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let Some(listener) = listen(addr).await else {
        return ExitCode::FAILURE;
    };
    println!(
        "CIBA OP listening on http://{addr} (issuer {})",
        api.ctx.config.issuer
    );
    let api = Arc::new(api);
    if let Some((port, config)) = tls_config {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Some(listener) = listen(addr).await else {
            return ExitCode::FAILURE;
        };
        let mtls_base = api.ctx.config.mtls_base_url.clone().unwrap_or_default();
        println!(
            "  mutual TLS on https://{addr} (client certificate required; mtls_endpoint_aliases \
             under {mtls_base})"
        );
        let hosts = Arc::new(HostCheck::new(&mtls_base, port));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(serve(listener, api.clone(), hosts, Some(acceptor)));
    }
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
    serve(listener, api, hosts, None).await;
    ExitCode::SUCCESS
}

async fn listen(addr: SocketAddr) -> Option<TcpListener> {
    TcpListener::bind(addr)
        .await
        .inspect_err(|e| eprintln!("ciba-local: cannot listen on {addr}: {e}"))
        .ok()
}
