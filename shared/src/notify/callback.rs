//! The client notification endpoint call (CIBA Core §10.2, §10.3): one HTTP POST of JSON with
//! the client's `client_notification_token` as Bearer token. Redirects are never followed, and
//! the connection only goes to addresses the callback address policy admits.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use url::{Host, Url};

use crate::callback_policy::AddressPolicy;
use crate::ports::{Resolver, SystemResolver};

/// Why a callback has no HTTP status.
#[derive(Debug, PartialEq)]
pub enum CallbackError {
    /// The endpoint could not be reached (DNS failure, refused, reset, timed out): worth retrying.
    Transport(String),
    /// The endpoint is not one the OP may call (its address is outside the callback address
    /// policy, or its URL is unusable): nothing was sent, and retrying soon would not change it.
    Refused(String),
}

/// Where a callback went: its status, or why there is none.
#[async_trait]
pub trait CallbackSender: Send + Sync {
    /// POSTs `body` to `url` with `Authorization: Bearer <bearer>`; answers the HTTP status.
    async fn post(&self, url: &str, bearer: &str, body: &Value) -> Result<u16, CallbackError>;
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// hyper over rustls (aws-lc) with the platform's root certificates, connecting only to the
/// addresses its `AddressPolicy` admits.
pub struct HttpCallbackSender {
    client: HttpsClient,
    policy: AddressPolicy,
    timeout: Duration,
}

impl HttpCallbackSender {
    /// A sender resolving names with the system's resolver.
    pub fn new(timeout: Duration, policy: AddressPolicy) -> Result<Self, String> {
        Self::with_resolver(timeout, policy, Arc::new(SystemResolver))
    }

    pub fn with_resolver(
        timeout: Duration,
        policy: AddressPolicy,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver { resolver, policy });
        // Without this the HTTPS connector's inner connector refuses https URLs.
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }
}

#[async_trait]
impl CallbackSender for HttpCallbackSender {
    async fn post(&self, url: &str, bearer: &str, body: &Value) -> Result<u16, CallbackError> {
        let url = Url::parse(url)
            .map_err(|e| CallbackError::Refused(format!("the endpoint is not a URL: {e}")))?;
        // hyper connects to an IP literal without asking the resolver: checked here instead.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal.filter(|ip| !self.policy.admits(*ip)) {
            return Err(CallbackError::Refused(format!(
                "the endpoint's address {ip} is not public"
            )));
        }
        // The URL as `url` normalised it, so hyper connects to the host that was checked.
        let request = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| CallbackError::Refused(format!("bad callback request: {e}")))?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(e)) => Err(match refusal(&e) {
                Some(refused) => CallbackError::Refused(refused.to_string()),
                None => CallbackError::Transport(format!("callback failed: {e:#}")),
            }),
            Err(_) => Err(CallbackError::Transport("callback timed out".into())),
        }
    }
}

/// The resolver's refusal inside a connection error, however deep the connectors wrapped it.
fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

/// A name whose every address the policy refuses.
#[derive(Debug)]
struct AddressRefused {
    host: String,
    addresses: Vec<IpAddr>,
}

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the endpoint's host {} resolves only to addresses that are not public: {:?}",
            self.host, self.addresses
        )
    }
}

impl std::error::Error for AddressRefused {}

/// The connector's resolver: the name's addresses the policy admits, and an `AddressRefused` when
/// it admits none. The connector connects to exactly these, so nothing resolves the name between
/// the check and the connection.
#[derive(Clone)]
struct CheckedResolver {
    resolver: Arc<dyn Resolver>,
    policy: AddressPolicy,
}

type Resolving = Pin<
    Box<
        dyn Future<
                Output = Result<
                    std::vec::IntoIter<SocketAddr>,
                    Box<dyn std::error::Error + Send + Sync>,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (resolver, policy) = (self.resolver.clone(), self.policy);
        Box::pin(async move {
            let host = name.as_str();
            let refused = |addresses| -> Self::Error {
                Box::new(AddressRefused {
                    host: host.to_owned(),
                    addresses,
                })
            };
            let addresses = resolver.resolve(host).await?;
            if addresses.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            let admitted: Vec<SocketAddr> = addresses
                .iter()
                .filter(|ip| policy.admits(**ip))
                // Port 0: the connector puts the URL's port in.
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            if admitted.is_empty() {
                return Err(refused(addresses));
            }
            Ok(admitted.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    struct Answers(Vec<IpAddr>);

    #[async_trait]
    impl Resolver for Answers {
        async fn resolve(&self, _: &str) -> std::io::Result<Vec<IpAddr>> {
            Ok(self.0.clone())
        }
    }

    async fn connect_to(
        policy: AddressPolicy,
        answers: &[&str],
    ) -> Result<Vec<SocketAddr>, String> {
        let resolver = Arc::new(Answers(
            answers.iter().map(|a| a.parse().unwrap()).collect(),
        ));
        let mut checked = CheckedResolver { resolver, policy };
        let name: Name = "rp.example.com".parse().unwrap();
        match checked.call(name).await {
            Ok(addresses) => Ok(addresses.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn only_the_public_addresses_of_a_name_are_connected_to() {
        let addresses = connect_to(
            AddressPolicy::PublicOnly,
            &["10.0.0.5", "93.184.216.34", "::ffff:127.0.0.1"],
        )
        .await;
        assert_eq!(addresses, Ok(vec!["93.184.216.34:0".parse().unwrap()]));
    }

    #[tokio::test]
    async fn a_name_with_no_public_address_is_refused() {
        let refused = connect_to(AddressPolicy::PublicOnly, &["10.0.0.5", "127.0.0.1"]).await;
        assert!(refused.unwrap_err().contains("not public"));
    }

    #[tokio::test]
    async fn a_local_op_connects_to_loopback_and_still_not_to_private_addresses() {
        let addresses = connect_to(AddressPolicy::AllowLoopback, &["10.0.0.5", "127.0.0.1"]).await;
        assert_eq!(addresses, Ok(vec!["127.0.0.1:0".parse().unwrap()]));
    }
}
