//! The local API's mutual-TLS port, through real TLS: as on API Gateway's mTLS custom domain,
//! every client presents a certificate the truststore vouches for (issued by a CA in it, or a
//! self-signed certificate listed in it), and the function sees that certificate in its event;
//! over it, the whole flow of a `tls_client_auth` client with a certificate-bound token.

use ciba_local::event::HttpRequest;
use serde_json::json;

use super::common;
use super::common::tls::{Ports, identity, pki, serve_both, tls_send};
use super::common::{CIBA_GRANT, Harness};

crate::on_both_stores!(the_ciba_flow_runs_through_real_mutual_tls_with_a_bound_token);

/// The whole flow of the FAPI client demo-mtls through the local API's TLS port (the README's
/// walk-through): `tls_client_auth` at `/bc-authorize` and `/token`, its certificate-bound
/// access token good at `/userinfo` over its own certificate only.
async fn the_ciba_flow_runs_through_real_mutual_tls_with_a_bound_token(h: Harness) {
    let ports = serve_both(h.api.clone()).await;
    let (cert, key) = identity("demo-mtls-rp");
    let rp = Some((cert.as_str(), key.as_str()));
    let request = super::request_object(&h, "Transfer 250 GBP");
    let post = |path: &str, form: &[(&str, &str)]| HttpRequest::new("POST", path).form(form);
    let started = tls_send(
        ports.tls,
        rp,
        post(
            "/bc-authorize",
            &[("client_id", "demo-mtls"), ("request", &request)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(started.status, 200, "{:?}", started.body);
    let id = started.body["auth_req_id"].as_str().unwrap().to_owned();
    let poll = post(
        "/token",
        &[
            ("grant_type", CIBA_GRANT),
            ("auth_req_id", &id),
            ("client_id", "demo-mtls"),
        ],
    );
    tls_send(ports.tls, rp, poll.clone())
        .await
        .unwrap()
        .expect_error(400, "authorization_pending");
    assert_eq!(h.alice_decides("approve").await.status, 204);
    h.clock.advance_secs(5);
    let tokens = tls_send(ports.tls, rp, poll).await.unwrap();
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let access = tokens.body["access_token"].as_str().unwrap();
    let userinfo = || {
        HttpRequest::new("GET", "/userinfo").header("authorization", &format!("Bearer {access}"))
    };
    let claims = tls_send(ports.tls, rp, userinfo()).await.unwrap();
    assert_eq!(
        (claims.status, &claims.body["sub"]),
        (200, &json!("user-alice"))
    );
    // Another client's certificate over the same TLS port; no certificate, as on the plain port.
    let (other_cert, other_key) = identity("demo-mtls-self");
    let other = tls_send(ports.tls, Some((&other_cert, &other_key)), userinfo());
    other.await.unwrap().expect_error(401, "invalid_token");
    h.send(userinfo()).await.expect_error(401, "invalid_token");
}

const DISCOVERY: &str = "/.well-known/openid-configuration";

async fn ports() -> Ports {
    serve_both(Harness::memory().await.api).await
}

async fn discovery_as(ports: &Ports, client: &str) -> Result<u16, String> {
    let (cert, key) = identity(client);
    let reply = tls_send(
        ports.tls,
        Some((&cert, &key)),
        HttpRequest::new("GET", DISCOVERY),
    )
    .await?;
    Ok(reply.status)
}

#[tokio::test]
async fn a_client_without_a_certificate_gets_no_answer_on_the_tls_port() {
    let ports = ports().await;
    let outcome = tls_send(ports.tls, None, HttpRequest::new("GET", DISCOVERY)).await;
    let error = outcome.expect_err("answered without a certificate");
    assert!(error.contains("CertificateRequired"), "{error}");
}

#[tokio::test]
async fn a_certificate_from_a_ca_outside_the_truststore_is_refused() {
    let ports = ports().await;
    let error = discovery_as(&ports, "stranger")
        .await
        .expect_err("answered an untrusted certificate");
    assert!(error.contains("UnknownCA"), "{error}");
}

/// A pinned self-signed certificate vouches for nobody but itself (RFC 8705 §2.2): a leaf signed
/// with its key, whatever subject it names, gets no handshake.
#[tokio::test]
async fn a_certificate_signed_by_a_pinned_self_signed_one_is_refused() {
    let ports = ports().await;
    let error = discovery_as(&ports, "impostor")
        .await
        .expect_err("answered a certificate issued by a pinned client certificate");
    assert!(
        error.contains("UnknownCA") || error.contains("BadCertificate"),
        "{error}"
    );
}

#[tokio::test]
async fn a_certificate_issued_by_the_trusted_ca_is_accepted() {
    let ports = ports().await;
    assert_eq!(discovery_as(&ports, "demo-mtls-rp").await, Ok(200));
}

#[tokio::test]
async fn a_self_signed_certificate_listed_in_the_truststore_is_accepted() {
    let ports = ports().await;
    assert_eq!(discovery_as(&ports, "demo-mtls-self").await, Ok(200));
}

#[tokio::test]
async fn the_plain_port_keeps_answering_beside_the_tls_port() {
    let ports = ports().await;
    assert_eq!(discovery_as(&ports, "demo-mtls-rp").await, Ok(200));
    let host = format!("127.0.0.1:{}", ports.plain.port());
    assert_eq!(plain_get(ports.plain, &host).await, 200);
}

#[tokio::test]
async fn a_host_that_is_not_the_tls_ports_own_gets_421() {
    let ports = ports().await;
    let (cert, key) = identity("demo-mtls-rp");
    for (host, status) in [
        (format!("localhost:{}", ports.tls.port()), 200),
        (
            format!("rebound.attacker.example:{}", ports.tls.port()),
            421,
        ),
        (format!("127.0.0.1:{}", ports.plain.port()), 421),
    ] {
        let request = HttpRequest::new("GET", DISCOVERY).header("host", &host);
        let reply = tls_send(ports.tls, Some((&cert, &key)), request)
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{host}");
    }
}

/// The status of `GET` discovery over plain HTTP with this `Host`.
async fn plain_get(addr: std::net::SocketAddr, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {DISCOVERY} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `cargo run -- --tls-port …` with the demo PKI: both ports answer, and the TLS one is where
/// the OP says its mTLS endpoints are.
#[tokio::test]
async fn the_binary_serves_mutual_tls_when_given_the_tls_flags() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, tls_port) = (free(), free());
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-local"))
        .args([
            "--port",
            &port.to_string(),
            "--tls-port",
            &tls_port.to_string(),
        ])
        .args([
            "--tls-cert",
            &pki("localhost.crt"),
            "--tls-key",
            &pki("localhost.pem"),
        ])
        .args(["--tls-client-ca", &pki("truststore.pem")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ports = Ports {
        plain: ([127, 0, 0, 1], port).into(),
        tls: ([127, 0, 0, 1], tls_port).into(),
    };
    let mut started = false;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if tokio::net::TcpStream::connect(ports.tls).await.is_ok() {
            started = true;
            break;
        }
    }
    let (cert, key) = identity("demo-mtls-rp");
    let discovery = match started {
        true => {
            tls_send(
                ports.tls,
                Some((&cert, &key)),
                HttpRequest::new("GET", DISCOVERY),
            )
            .await
        }
        false => Err("the TLS port never opened".into()),
    };
    let plain = match started {
        true => Some(plain_get(ports.plain, &format!("127.0.0.1:{port}")).await),
        false => None,
    };
    server.kill().ok();
    server.wait().ok();
    assert_eq!(discovery.map(|r| r.status), Ok(200));
    assert_eq!(plain, Some(200));
}

#[test]
fn a_tls_file_that_cannot_be_read_is_a_usage_error_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-local"))
        .args(["--port", "0", "--tls-port", "1"])
        .args([
            "--tls-cert",
            &pki("localhost.crt"),
            "--tls-key",
            &pki("localhost.pem"),
        ])
        .args(["--tls-client-ca", &pki("no-such-truststore.pem")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-client-ca") && stderr.contains("no-such-truststore.pem"),
        "{stderr}"
    );
}
