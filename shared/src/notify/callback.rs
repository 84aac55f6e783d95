//! The client notification endpoint call (CIBA Core §10.2, §10.3): one HTTP POST of JSON with
//! the client's `client_notification_token` as Bearer token. Redirects are never followed.

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where a callback went: its status, or why there is none.
#[async_trait]
pub trait CallbackSender: Send + Sync {
    /// POSTs `body` to `url` with `Authorization: Bearer <bearer>`; answers the HTTP status.
    /// An `Err` is a transport failure (refused, reset, timed out), worth retrying.
    async fn post(&self, url: &str, bearer: &str, body: &Value) -> Result<u16, String>;
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// hyper over rustls (aws-lc) with the platform's root certificates.
pub struct HttpCallbackSender {
    client: HttpsClient,
    timeout: Duration,
}

impl HttpCallbackSender {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, timeout })
    }
}

#[async_trait]
impl CallbackSender for HttpCallbackSender {
    async fn post(&self, url: &str, bearer: &str, body: &Value) -> Result<u16, String> {
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("bad callback request: {e}"))?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(e)) => Err(format!("callback failed: {e}")),
            Err(_) => Err("callback timed out".into()),
        }
    }
}
