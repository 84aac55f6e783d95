//! Requests through real mutual TLS to the local API: a client that trusts the demo CA and
//! presents a demo client certificate (or none), and the local API served on both of its ports.

use std::net::SocketAddr;
use std::sync::Arc;

use ciba_local::event::HttpRequest;
use ciba_local::server::serve;
use ciba_local::tls::{TlsFiles, server_config};
use ciba_local::{HostCheck, LocalApi};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use super::Reply;

/// A file of the demo PKI (`tests/keys/pki`, made by `tests/pki/make-demo-pki.sh`).
pub fn pki(file: &str) -> String {
    format!("{}/tests/keys/pki/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The certificate and key paths of a demo client: `demo-mtls-rp`, `demo-mtls-self`, `stranger`.
pub fn identity(name: &str) -> (String, String) {
    (pki(&format!("{name}.crt")), pki(&format!("{name}.pem")))
}

/// The local API's two listeners, as `cargo run -- --tls-port …` opens them.
pub struct Ports {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
}

/// Serves `api` on a plain port and on a mutual-TLS port configured from the demo PKI (server
/// certificate for 127.0.0.1, truststore of the demo CA and the self-signed demo client).
pub async fn serve_both(api: Arc<LocalApi>) -> Ports {
    let config = server_config(&TlsFiles {
        cert: pki("localhost.crt"),
        key: pki("localhost.pem"),
        client_ca: pki("truststore.pem"),
    })
    .expect("the demo PKI configures TLS");
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = Ports {
        plain: plain.local_addr().unwrap(),
        tls: tls.local_addr().unwrap(),
    };
    let plain_hosts = HostCheck::new(&api.ctx.config.issuer, ports.plain.port());
    let tls_hosts = HostCheck::new(&format!("https://{}", ports.tls), ports.tls.port());
    tokio::spawn(serve(plain, api.clone(), Arc::new(plain_hosts), None));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(serve(tls, api, Arc::new(tls_hosts), Some(acceptor)));
    ports
}

/// Sends `req` over HTTPS to `addr`, trusting the demo CA and presenting `identity` (certificate
/// and key PEM paths, see [`identity`]) when given; `Host` is `addr` unless `req` names one.
/// `Err` when the handshake or the exchange fails, as it does for a refused certificate.
pub async fn tls_send(
    addr: SocketAddr,
    identity: Option<(&str, &str)>,
    req: HttpRequest,
) -> Result<Reply, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki("demo-ca.crt")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {}", causes(&e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(&req.target);
    if !req.headers.iter().any(|(name, _)| name == "host") {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in &req.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("exchange: {}", causes(&e)))?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        let text = String::from_utf8_lossy(&bytes);
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
    };
    Ok(Reply {
        status: parts.status.as_u16(),
        body,
        headers: parts.headers,
    })
}

/// `error` and its causes, so a refusal names the TLS alert behind it.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}
