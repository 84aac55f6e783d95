//! The local API's HTTP listeners: plain HTTP, and mutual TLS as on API Gateway's mTLS custom
//! domain. Both answer through the same path; only the TLS one knows a client certificate.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::event::{self, ClientCert, Event};
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
    let Some(headers) = joined(parts.headers) else {
        return plain(400, "header values must be visible ASCII");
    };
    let client_cert = match peer {
        None => None,
        Some(Ok(cert)) => Some(cert),
        Some(Err(why)) => {
            tracing::info!(error = %why, "client certificate unreadable");
            return plain(400, "the client certificate cannot be read");
        }
    };
    let id = format!("local-{}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed));
    let lambda_request = event::into_lambda(event::event(Event {
        method: parts.method,
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers,
        body: Vec::from(body),
        client_cert,
        request_id: &id,
        epoch_ms: api.ctx.clock.now_ms(),
    }));
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

/// The headers with one value per name, repeated ones joined with commas as API Gateway joins
/// them; `None` when a value is not visible ASCII, which an API Gateway event cannot carry.
fn joined(headers: HeaderMap) -> Option<HeaderMap> {
    if headers.values().any(|v| v.to_str().is_err()) {
        return None;
    }
    if headers.len() == headers.keys_len() {
        return Some(headers);
    }
    let mut joined = HeaderMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        joined.insert(name.clone(), HeaderValue::try_from(values.join(",")).ok()?);
    }
    Some(joined)
}

fn plain(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({"error": "invalid_request", "error_description": message});
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
