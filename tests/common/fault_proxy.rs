//! A fault-injecting HTTP proxy in front of an AWS emulator: it forwards every request to the
//! emulator, except those of an operation a rule names, which it answers with a fault instead.
//!
//! The operation of a request is its `X-Amz-Target` (`DynamoDB_20120810.TransactWriteItems`,
//! `TrentService.Sign`) or, for the Query protocol, the form's `Action` (`Publish`).

use std::sync::{Arc, Mutex};

use ciba_shared::store::dynamodb::local_client;
use ciba_testkit::dynamodb::{LocalTable, table_from_env};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

/// What the proxy does with a request its rule matches.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forwards the request and waits for the emulator's answer (so the call takes effect),
    /// then closes the client's connection without answering: a response lost on the way back.
    DropResponse,
    /// Answers `status` with `body` (of `content_type`) without forwarding anything.
    Answer {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Holds the request until the test releases it, then forwards it: the test can act between
    /// the caller's sending and the emulator's receiving.
    Hold(Arc<Gate>),
}

/// Where a held request waits.
#[derive(Debug, Default)]
pub struct Gate {
    arrived: Notify,
    released: Notify,
}

impl Gate {
    /// Waits until the held request has arrived at the proxy.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Lets the held request go on to the emulator.
    pub fn release(&self) {
        self.released.notify_one();
    }
}

impl Fault {
    /// DynamoDB's `ProvisionedThroughputExceededException`, as AWS sends it.
    pub fn dynamodb_throttled() -> Self {
        Fault::Answer {
            status: 400,
            content_type: "application/x-amz-json-1.0",
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#.into(),
        }
    }

    /// SNS's `Throttling` error (Query protocol).
    pub fn sns_throttled() -> Self {
        Fault::Answer {
            status: 400,
            content_type: "text/xml",
            body: concat!(
                r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">"#,
                "<Error><Type>Sender</Type><Code>Throttling</Code>",
                "<Message>Rate exceeded</Message></Error>",
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            )
            .into(),
        }
    }

    /// KMS's `ThrottlingException`.
    pub fn kms_throttled() -> Self {
        Fault::Answer {
            status: 400,
            content_type: "application/x-amz-json-1.1",
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        }
    }
}

struct Rule {
    operation: String,
    fault: Fault,
    /// How many more requests the rule applies to; `None`: every one.
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    /// Every request's operation, in order of arrival, and whether a fault met it.
    seen: Vec<(String, bool)>,
}

/// The proxy, listening on a free loopback port until dropped with the test's runtime.
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// A proxy to the emulator at `upstream` (`http://127.0.0.1:port`), with no faults yet.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.trim_end_matches('/').to_owned();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, client, upstream) = (shared.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, state.clone(), client.clone(), upstream.clone())
                    });
                    // A dropped response ends the connection with an error: expected.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { endpoint, state }
    }

    /// Meets the next `times` requests of `operation` with `fault`.
    pub fn fail_next(&self, operation: &str, times: usize, fault: Fault) {
        self.add(operation, Some(times), fault);
    }

    /// Meets every request of `operation` with `fault`, until `heal`.
    pub fn fail_always(&self, operation: &str, fault: Fault) {
        self.add(operation, None, fault);
    }

    /// Holds the next request of `operation` until the gate answered is released.
    pub fn hold_next(&self, operation: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.add(operation, Some(1), Fault::Hold(gate.clone()));
        gate
    }

    /// Removes every rule: from now on the proxy only forwards.
    pub fn heal(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// How many requests of `operation` arrived, and how many of them a fault met.
    pub fn count(&self, operation: &str) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        let of_op = state.seen.iter().filter(|(op, _)| op == operation);
        let total = of_op.clone().count();
        (total, of_op.filter(|(_, faulted)| *faulted).count())
    }

    fn add(&self, operation: &str, remaining: Option<usize>, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            operation: operation.to_owned(),
            fault,
            remaining,
        });
    }
}

/// A fresh DynamoDB Local table (see `ciba_testkit::dynamodb`), a proxy in front of DynamoDB
/// Local, and a client reaching the table through the proxy; `None` when the test skips.
pub async fn dynamodb_behind_proxy() -> Option<(LocalTable, FaultProxy, aws_sdk_dynamodb::Client)> {
    let local = table_from_env().await?;
    let upstream = super::emulator::endpoint("DYNAMODB")?;
    let proxy = FaultProxy::start(&upstream).await;
    let client = local_client(&proxy.endpoint).await;
    Some((local, proxy, client))
}

/// The fault of the first rule for `operation` that still applies, used up by one.
fn take_fault(state: &Mutex<State>, operation: &str) -> Option<Fault> {
    let mut state = state.lock().unwrap();
    let fault = state
        .rules
        .iter_mut()
        .find(|r| r.operation == operation && r.remaining != Some(0))
        .map(|rule| {
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            rule.fault.clone()
        });
    state.seen.push((operation.to_owned(), fault.is_some()));
    fault
}

/// The AWS operation a request calls.
fn operation(headers: &hyper::HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.to_owned();
    }
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "Action")
        .map(|(_, action)| action.into_owned())
        .unwrap_or_default()
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: hyper::Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fault = take_fault(&state, &operation(&parts.headers, &body));
    if let Some(Fault::Answer {
        status,
        content_type,
        body,
    }) = fault
    {
        return Ok(hyper::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    if let Some(Fault::Hold(gate)) = &fault {
        gate.arrived.notify_one();
        gate.released.notified().await;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{path}").parse().unwrap();
    let answer = client
        .request(hyper::Request::from_parts(parts, Full::new(body)))
        .await;
    if matches!(fault, Some(Fault::DropResponse)) {
        // The emulator has answered, so the call took effect; the caller never hears of it.
        return Err(Dropped);
    }
    Ok(match answer {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            hyper::Response::from_parts(parts, Full::new(body))
        }
        Err(e) => hyper::Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(format!("fault proxy: {e}"))))
            .unwrap(),
    })
}
