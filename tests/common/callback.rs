//! A relying party's client notification endpoint for tests: records every request and answers
//! from a script of statuses (then 204).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: VecDeque<u16>,
    received: Vec<Received>,
}

pub struct CallbackServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl CallbackServer {
    /// Listens on a free loopback port; answers `script` in order, then 204 forever.
    pub async fn start(script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ciba/callback", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            received: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move {
                                let header = |name: &str| {
                                    req.headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned)
                                };
                                let (method, path) =
                                    (req.method().to_string(), req.uri().path().to_owned());
                                let (authorization, content_type) =
                                    (header("authorization"), header("content-type"));
                                let bytes = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                                let status = {
                                    let mut s = state.lock().unwrap();
                                    s.received.push(Received {
                                        method,
                                        path,
                                        authorization,
                                        content_type,
                                        body,
                                    });
                                    s.script.pop_front().unwrap_or(204)
                                };
                                let mut response = hyper::Response::builder().status(status);
                                if (300..400).contains(&status) {
                                    response = response.header("location", "/elsewhere");
                                }
                                Ok::<_, Infallible>(response.body(Full::new(Bytes::new())).unwrap())
                            }
                        },
                    );
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// What arrived within half a second from now: for checking that nothing (more) comes.
    pub async fn settle(&self) -> Vec<Received> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.received()
    }

    /// Waits until `n` requests arrived (at most 10 s), then a little longer to catch extras.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.received().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.received()
    }
}
