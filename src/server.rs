//! The local API's HTTP listeners: plain HTTP, and mutual TLS as on API Gateway's mTLS custom
//! domain. Both answer through the same path; only the TLS one knows a client certificate.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::event::{ClientCert, HttpRequest};
use crate::{HostCheck, LocalApi};

/// API Gateway's payload limit is 10 MB; nothing here needs more than a few kilobytes.
const MAX_BODY: usize = 1024 * 1024;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Serves `api` on `listener` until the process ends; with `tls`, every connection first
/// completes a mutual-TLS handshake and its requests carry the client's certificate.
pub async fn serve(
    listener: TcpListener,
    api: Arc<LocalApi>,
    hosts: Arc<HostCheck>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (api, hosts, tls) = (api.clone(), hosts.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return connection(stream, api, hosts, None).await;
            };
            let stream = match tls.accept(stream).await {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(error = %e, "TLS handshake refused"),
            };
            // The verifier made a certificate mandatory, so a finished handshake has one.
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCert::from_der(leaf));
            connection(stream, api, hosts, peer.map(Arc::new)).await;
        });
    }
}

/// The HTTP/1.1 exchanges of one connection; `peer` is the client certificate's description,
/// or why it could not be described.
async fn connection<S>(
    stream: S,
    api: Arc<LocalApi>,
    hosts: Arc<HostCheck>,
    peer: Option<Arc<Result<ClientCert, String>>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (api, hosts, peer) = (api.clone(), hosts.clone(), peer.clone());
        async move { Ok::<_, Infallible>(answer(&api, &hosts, peer.as_deref(), req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection closed");
    }
}

async fn answer(
    api: &LocalApi,
    hosts: &HostCheck,
    peer: Option<&Result<ClientCert, String>>,
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
    request.client_cert = match peer {
        None => None,
        Some(Ok(cert)) => Some(cert.clone()),
        Some(Err(why)) => {
            tracing::info!(error = %why, "client certificate unreadable");
            return plain(400, "the client certificate cannot be read");
        }
    };
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
