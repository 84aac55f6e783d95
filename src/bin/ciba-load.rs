//! `ciba-load`: a bounded load driver for a CIBA OP on loopback (issue 6).
//!
//! N workers run whole poll-mode flows for D seconds over keep-alive connections:
//!
//! - `--target ours` (the local API, `cargo run` / `target/perf/ciba-local`):
//!   POST /bc-authorize (demo-rp, client_secret_basic, login_hint alice, a unique
//!   binding_message) → GET /_local/pushes?user=alice&binding_message=… (the phone's push: its
//!   txn) →
//!   POST /device/decision signed with tests/keys/alice-phone.pem → POST /token until 200;
//! - `--target node` (bench/node-op/server.mjs, node-oidc-provider): POST /backchannel →
//!   POST /_approve (the server's stand-in for the device: the same ES256 decision JWT, with
//!   txn = auth_req_id) → POST /token until 200.
//!
//! With `--target ours`, `--shape ping` and `--shape push` register a ping or push client whose
//! notification endpoint is a receiver in this process on 127.0.0.1, and `--shape refresh`
//! follows each whole flow with one refresh.
//!
//! It prints flows/s, p50/p99 per endpoint and errors as JSON (and as a Markdown table with
//! `--markdown PATH`), and the server's peak RSS (VmHWM) with `--pid`.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciba_local::cli::{self, Stop};
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random};
use ciba_shared::protocol::CIBA_GRANT;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

const USAGE: &str = "\
ciba-load: whole CIBA poll flows against an OP on 127.0.0.1, for a bounded time

  --api URL          the OP (default http://127.0.0.1:8080); only loopback addresses
  --target KIND      ours (default: the local API) or node (bench/node-op/server.mjs)
  --concurrency N    concurrent workers, one flow at a time each (default 8)
  --duration S       seconds of load (default 10, at most 1800)
  --shape KIND       full (default: the whole flow above) or pending: POST bc-authorize (or
                     /backchannel) then one POST /token answering authorization_pending, the OP's
                     own endpoints without the device step and its harness. With --target ours
                     also: ping (a ping client registered at start: bc-authorize, the device's
                     decision, the ping at this process's receiver, the redeeming POST /token),
                     push (the same with a push client: the tokens arrive at the receiver) and
                     refresh (a whole flow, then one refresh_token grant, as token/refresh)
  --threads N        the driver's tokio worker threads (default 1)
  --flows N          stop after N flows instead of at the end of --duration
  --count-url URLS   comma-separated /_counts URLs of bench/count_proxy.py in front of the OP's
                     AWS services: after every request, once no call has been under way for
                     100 ms, the calls and capacity units counted since the previous one are put
                     down to that endpoint (those counted after its answer separately, as the
                     OP's asynchronous work), with the sequential AWS round trips made before
                     the answer (calls overlapping in time count once); needs --concurrency 1
  --pid PID          the server's pid: report its peak RSS (VmHWM) from /proc/PID/status
  --key PEM          alice's device key (default tests/keys/alice-phone.pem)
  --label TEXT       a name for this run in the output (default: the target)
  --json PATH        also write the JSON result to PATH
  --markdown PATH    also write the Markdown table to PATH
";

const MAX_POLLS: usize = 20;

struct Options {
    api: String,
    target: Target,
    shape: Shape,
    concurrency: usize,
    duration: Duration,
    flows: Option<u64>,
    count_urls: Vec<String>,
    threads: usize,
    pid: Option<u32>,
    key: String,
    label: String,
    json: Option<String>,
    markdown: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Ours,
    Node,
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Full,
    Pending,
    Ping,
    Push,
    Refresh,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Pending => "pending",
            Self::Ping => "ping",
            Self::Push => "push",
            Self::Refresh => "refresh",
        }
    }

    /// The delivery mode of the client this shape registers, if it registers one.
    fn notified(self) -> Option<&'static str> {
        match self {
            Self::Ping => Some("ping"),
            Self::Push => Some("push"),
            _ => None,
        }
    }
}

fn parse(args: &[String]) -> Result<Options, Stop> {
    let flags = cli::flags(args, USAGE)?;
    options(&flags).map_err(Stop::Usage)
}

fn options(flags: &HashMap<String, String>) -> Result<Options, String> {
    let number = |name: &str, default: u64| -> Result<u64, String> {
        flags.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name} {v:?} is not a number"))
        })
    };
    let api = flags
        .get("api")
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
        .trim_end_matches('/')
        .to_owned();
    let host = api
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .ok_or_else(|| format!("--api {api:?} must be http://127.x.x.x:PORT"))?;
    if !(host.starts_with("127.") || host == "localhost") {
        return Err(format!(
            "--api {api:?}: only loopback addresses are allowed"
        ));
    }
    let target = match flags.get("target").map(String::as_str) {
        None | Some("ours") => Target::Ours,
        Some("node") => Target::Node,
        Some(other) => return Err(format!("--target {other:?} must be ours or node")),
    };
    let shape = match flags.get("shape").map(String::as_str) {
        None | Some("full") => Shape::Full,
        Some("pending") => Shape::Pending,
        Some("ping") => Shape::Ping,
        Some("push") => Shape::Push,
        Some("refresh") => Shape::Refresh,
        Some(other) => {
            return Err(format!(
                "--shape {other:?} must be full, pending, ping, push or refresh"
            ));
        }
    };
    if target == Target::Node && !matches!(shape, Shape::Full | Shape::Pending) {
        return Err(format!(
            "--shape {} needs --target ours: bench/node-op runs poll mode only",
            shape.name()
        ));
    }
    let seconds = number("duration", 10)?;
    if !(1..=1800).contains(&seconds) {
        return Err("--duration must be 1 to 1800 seconds".into());
    }
    let count_urls: Vec<String> = flags
        .get("count-url")
        .map(|urls| {
            urls.split(',')
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for url in &count_urls {
        if !url.starts_with("http://127.") {
            return Err(format!(
                "--count-url {url:?} must be http://127.x.x.x:PORT/_counts"
            ));
        }
    }
    let concurrency = number("concurrency", 8)?.clamp(1, 1024) as usize;
    if !count_urls.is_empty() && concurrency != 1 {
        return Err("--count-url needs --concurrency 1".into());
    }
    let flows = match flags.get("flows") {
        Some(_) => Some(number("flows", 0)?.max(1)),
        None => None,
    };
    let pid = match flags.get("pid") {
        Some(p) => Some(p.parse().map_err(|_| format!("--pid {p:?} is not a pid"))?),
        None => None,
    };
    Ok(Options {
        api,
        target,
        shape,
        concurrency,
        duration: Duration::from_secs(seconds),
        flows,
        count_urls,
        threads: number("threads", 1)?.clamp(1, 64) as usize,
        pid,
        key: flags
            .get("key")
            .cloned()
            .unwrap_or_else(|| "tests/keys/alice-phone.pem".into()),
        label: flags.get("label").cloned().unwrap_or_else(|| {
            match target {
                Target::Ours => "ours",
                Target::Node => "node",
            }
            .into()
        }),
        json: flags.get("json").cloned(),
        markdown: flags.get("markdown").cloned(),
    })
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Shared {
    client: HttpClient,
    api: String,
    target: Target,
    shape: Shape,
    key: SigningKey,
    authorization: String,
    /// What the ping or push client's notification endpoint received, by auth_req_id.
    callbacks: Callbacks,
    deadline: Instant,
    /// Flows left to start when `--flows` bounds the run.
    flows_left: Option<std::sync::atomic::AtomicU64>,
    count_urls: Vec<String>,
    /// `/_local/pushes` for alice; each lookup adds its flow's binding message.
    pushes_target: String,
}

/// What one worker saw: latencies in microseconds per endpoint, errors by endpoint and cause.
#[derive(Default)]
struct Tally {
    flows: u64,
    polls: u64,
    latencies: BTreeMap<&'static str, Vec<u64>>,
    errors: BTreeMap<String, u64>,
    push_list_len: usize,
    /// With `--count-url`: AWS calls by endpoint and operation, and (read, write) units by
    /// endpoint; `counted` is the proxies' totals after the last request.
    aws_calls: BTreeMap<&'static str, BTreeMap<String, u64>>,
    aws_units: BTreeMap<&'static str, (f64, f64)>,
    /// Of those calls, the ones made after the endpoint had answered (the local notifier's).
    aws_after: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Sequential AWS round trips made before the endpoint answered, summed over its requests.
    aws_rounds: BTreeMap<&'static str, u64>,
    /// The injected delay on those rounds, in ms, summed over the endpoint's requests.
    aws_delay_ms: BTreeMap<&'static str, f64>,
    /// (read, write) units of the calls made after the answer, by endpoint.
    aws_after_units: BTreeMap<&'static str, (f64, f64)>,
    /// DynamoDB items written by endpoint and key kind.
    aws_item_writes: BTreeMap<&'static str, BTreeMap<String, u64>>,
    counted: Counters,
    /// When the last request was answered.
    answered: Option<Instant>,
}

/// The proxies' running totals.
#[derive(Default, Clone)]
struct Counters {
    calls: BTreeMap<String, u64>,
    /// DynamoDB items written, by the kind of their key (`count_proxy.py`'s `item_writes`).
    item_writes: BTreeMap<String, u64>,
    read_units: f64,
    write_units: f64,
    rounds: u64,
    /// Milliseconds of injected delay (`count_proxy.py --delay-ms`) on the rounds' path.
    delay_ms: f64,
}

impl Counters {
    /// The calls counted in `self` and not in `before`, by operation.
    fn calls_since<'a>(&'a self, before: &'a Counters) -> impl Iterator<Item = (&'a String, u64)> {
        increase(&self.calls, &before.calls)
    }
}

/// What each count of `now` gained over `before`.
fn increase<'a>(
    now: &'a BTreeMap<String, u64>,
    before: &'a BTreeMap<String, u64>,
) -> impl Iterator<Item = (&'a String, u64)> {
    now.iter().filter_map(move |(key, n)| {
        let was = before.get(key).copied().unwrap_or(0);
        (*n > was).then(|| (key, n - was))
    })
}

/// Adds `more` into `into`, key by key.
fn add_counts(into: &mut BTreeMap<String, u64>, more: impl IntoIterator<Item = (String, u64)>) {
    for (key, n) in more {
        *into.entry(key).or_default() += n;
    }
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.flows += other.flows;
        self.polls += other.polls;
        for (endpoint, mut values) in other.latencies {
            self.latencies
                .entry(endpoint)
                .or_default()
                .append(&mut values);
        }
        for (error, n) in other.errors {
            *self.errors.entry(error).or_default() += n;
        }
        self.push_list_len = self.push_list_len.max(other.push_list_len);
        for (endpoint, calls) in other.aws_calls {
            let mine = self.aws_calls.entry(endpoint).or_default();
            for (op, n) in calls {
                *mine.entry(op).or_default() += n;
            }
        }
        for (endpoint, (r, w)) in other.aws_units {
            let mine = self.aws_units.entry(endpoint).or_default();
            mine.0 += r;
            mine.1 += w;
        }
        for (endpoint, calls) in other.aws_after {
            let mine = self.aws_after.entry(endpoint).or_default();
            for (op, n) in calls {
                *mine.entry(op).or_default() += n;
            }
        }
        for (endpoint, n) in other.aws_rounds {
            *self.aws_rounds.entry(endpoint).or_default() += n;
        }
        for (endpoint, ms) in other.aws_delay_ms {
            *self.aws_delay_ms.entry(endpoint).or_default() += ms;
        }
        for (endpoint, (r, w)) in other.aws_after_units {
            let mine = self.aws_after_units.entry(endpoint).or_default();
            mine.0 += r;
            mine.1 += w;
        }
        for (endpoint, kinds) in other.aws_item_writes {
            add_counts(self.aws_item_writes.entry(endpoint).or_default(), kinds);
        }
    }
}

struct Reply {
    status: u16,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn describe(&self) -> String {
        let error = self.json()["error"].as_str().unwrap_or("").to_owned();
        format!("{} {error}", self.status).trim().to_owned()
    }
}

impl Shared {
    /// One request, timed into `tally` under `endpoint`.
    async fn send(
        &self,
        tally: &mut Tally,
        endpoint: &'static str,
        method: hyper::Method,
        target: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        // The client authenticates (client_secret_basic) at the OP's two client endpoints.
        let auth = matches!(
            endpoint,
            "bc-authorize" | "backchannel" | "token" | "token/refresh"
        );
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.api));
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        if auth {
            builder = builder.header("authorization", &self.authorization);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?
            .to_bytes();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latencies.entry(endpoint).or_default().push(micros);
        tally.answered = Some(Instant::now());
        if !self.count_urls.is_empty() {
            self.count(tally, endpoint).await?;
        }
        Ok(Reply { status, body })
    }

    /// The proxies' totals, summed, and whether they are quiet: no call under way and none ended
    /// in the last 100 ms.
    async fn counters(&self) -> Result<(Counters, bool), String> {
        let mut total = Counters::default();
        let mut quiet = true;
        for url in &self.count_urls {
            let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            let counts: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
            for (field, into) in [
                ("calls", &mut total.calls),
                ("item_writes", &mut total.item_writes),
            ] {
                let counted = counts[field].as_object().into_iter().flatten();
                add_counts(
                    into,
                    counted.map(|(key, n)| (key.clone(), n.as_u64().unwrap_or(0))),
                );
            }
            total.read_units += counts["read_units"].as_f64().unwrap_or(0.0);
            total.write_units += counts["write_units"].as_f64().unwrap_or(0.0);
            total.rounds += counts["rounds"].as_u64().unwrap_or(0);
            total.delay_ms += counts["delay_ms"].as_f64().unwrap_or(0.0);
            quiet &= counts["inflight"].as_u64() == Some(0)
                && counts["idle_ms"].as_f64().is_some_and(|ms| ms >= 100.0);
        }
        Ok((total, quiet))
    }

    /// The proxies' totals once they are quiet (for at most 5 s).
    async fn settled(&self) -> Result<Counters, String> {
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (now, quiet) = self.counters().await?;
            if quiet || Instant::now() > give_up {
                return Ok(now);
            }
        }
    }

    /// Puts the AWS calls made since the previous request down to `endpoint`, once the OP's
    /// asynchronous work (the local notifier) has settled: the proxies quiet, for at most 5 s.
    /// The totals read right at the answer tell the round trips on the request's path from the
    /// calls made after it.
    async fn count(&self, tally: &mut Tally, endpoint: &'static str) -> Result<(), String> {
        let (answered, _) = self.counters().await?;
        let now = self.settled().await?;
        *tally.aws_rounds.entry(endpoint).or_default() += answered.rounds - tally.counted.rounds;
        *tally.aws_delay_ms.entry(endpoint).or_default() +=
            answered.delay_ms - tally.counted.delay_ms;
        let owned = |counts: &mut dyn Iterator<Item = (&String, u64)>| {
            counts.map(|(k, n)| (k.clone(), n)).collect::<Vec<_>>()
        };
        add_counts(
            tally.aws_after.entry(endpoint).or_default(),
            owned(&mut now.calls_since(&answered)),
        );
        add_counts(
            tally.aws_calls.entry(endpoint).or_default(),
            owned(&mut now.calls_since(&tally.counted)),
        );
        add_counts(
            tally.aws_item_writes.entry(endpoint).or_default(),
            owned(&mut increase(&now.item_writes, &tally.counted.item_writes)),
        );
        let after_units = tally.aws_after_units.entry(endpoint).or_default();
        after_units.0 += now.read_units - answered.read_units;
        after_units.1 += now.write_units - answered.write_units;
        let units = tally.aws_units.entry(endpoint).or_default();
        units.0 += now.read_units - tally.counted.read_units;
        units.1 += now.write_units - tally.counted.write_units;
        tally.counted = now;
        Ok(())
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes()
    }

    /// One whole flow; an error names the endpoint and cause.
    async fn flow(&self, tally: &mut Tally, worker: usize, seq: u64) -> Result<(), String> {
        let binding = format!("L{worker}-{seq}");
        let (authorize_path, token_auth) = match self.target {
            Target::Ours => ("/bc-authorize", "bc-authorize"),
            Target::Node => ("/backchannel", "backchannel"),
        };
        let notification_token = format!("cnt-{worker}-{seq}-{}", OsRandom.token(8));
        let mut form = vec![
            ("scope", "openid"),
            ("login_hint", "alice"),
            ("binding_message", binding.as_str()),
        ];
        if self.shape.notified().is_some() {
            form.push(("client_notification_token", notification_token.as_str()));
        }
        let reply = self
            .send(
                tally,
                token_auth,
                hyper::Method::POST,
                authorize_path,
                Some("application/x-www-form-urlencoded"),
                Self::form(&form),
            )
            .await?;
        if reply.status != 200 {
            return Err(format!("{token_auth}: {}", reply.describe()));
        }
        let ack = reply.json();
        let auth_req_id = ack["auth_req_id"]
            .as_str()
            .ok_or_else(|| format!("{token_auth}: no auth_req_id"))?
            .to_owned();

        if self.shape == Shape::Pending {
            return self.poll_pending(tally, &auth_req_id).await;
        }
        match self.target {
            Target::Ours => self.decide(tally, &binding).await?,
            // node's stand-in for the device takes the auth_req_id as txn.
            Target::Node => {
                self.post_decision(tally, "_approve", "/_approve", &auth_req_id)
                    .await?
            }
        }
        match self.shape {
            Shape::Ping => {
                self.callback(tally, &auth_req_id).await?;
                self.redeem(tally, &ack, &auth_req_id).await.map(drop)
            }
            Shape::Push => {
                let pushed = self.callback(tally, &auth_req_id).await?;
                if pushed["id_token"].is_string() {
                    Ok(())
                } else {
                    Err(format!("notification: no tokens pushed: {pushed}"))
                }
            }
            Shape::Refresh => {
                let tokens = self.redeem(tally, &ack, &auth_req_id).await?;
                self.refresh(tally, &tokens).await
            }
            Shape::Full | Shape::Pending => self.redeem(tally, &ack, &auth_req_id).await.map(drop),
        }
    }

    /// Polls until the tokens come (at most 20 polls, `interval` apart after a pending one).
    async fn redeem(
        &self,
        tally: &mut Tally,
        ack: &Value,
        auth_req_id: &str,
    ) -> Result<Value, String> {
        for _ in 0..MAX_POLLS {
            let reply = self.poll(tally, auth_req_id).await?;
            match reply.status {
                200 if reply.json()["id_token"].is_string() => return Ok(reply.json()),
                400 => {
                    let error = reply.json()["error"].as_str().unwrap_or("").to_owned();
                    if error == "authorization_pending" || error == "slow_down" {
                        *tally
                            .errors
                            .entry(format!("token: {error} (polled again)"))
                            .or_default() += 1;
                        let wait = ack["interval"].as_u64().unwrap_or(2).max(1);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        continue;
                    }
                    return Err(format!("token: {}", reply.describe()));
                }
                _ => return Err(format!("token: {}", reply.describe())),
            }
        }
        Err("token: no tokens after 20 polls".into())
    }

    /// One refresh_token grant with the refresh token of `tokens`.
    async fn refresh(&self, tally: &mut Tally, tokens: &Value) -> Result<(), String> {
        let refresh_token = tokens["refresh_token"]
            .as_str()
            .ok_or("token: no refresh_token issued")?;
        let reply = self
            .send(
                tally,
                "token/refresh",
                hyper::Method::POST,
                "/token",
                Some("application/x-www-form-urlencoded"),
                Self::form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ]),
            )
            .await?;
        if reply.status == 200 && reply.json()["access_token"].is_string() {
            Ok(())
        } else {
            Err(format!("token/refresh: {}", reply.describe()))
        }
    }

    /// The notification for `auth_req_id` at the receiver (for at most 10 s), timed from the
    /// previous request's answer (the decision's) as the endpoint `notification`.
    async fn callback(&self, tally: &mut Tally, auth_req_id: &str) -> Result<Value, String> {
        let since = tally.answered.unwrap_or_else(Instant::now);
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self
                .callbacks
                .lock()
                .map_err(|_| "notification: receiver poisoned".to_owned())?
                .remove(auth_req_id);
            if let Some((arrived, body)) = got {
                let micros = u64::try_from(arrived.saturating_duration_since(since).as_micros())
                    .unwrap_or(u64::MAX);
                tally
                    .latencies
                    .entry("notification")
                    .or_default()
                    .push(micros);
                return Ok(body);
            }
            if Instant::now() > give_up {
                return Err("notification: none within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One CIBA grant request at the token endpoint, counted as a poll.
    async fn poll(&self, tally: &mut Tally, auth_req_id: &str) -> Result<Reply, String> {
        let reply = self
            .send(
                tally,
                "token",
                hyper::Method::POST,
                "/token",
                Some("application/x-www-form-urlencoded"),
                Self::form(&[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)]),
            )
            .await?;
        tally.polls += 1;
        Ok(reply)
    }

    /// One poll of an undecided request: `authorization_pending` is the success here.
    async fn poll_pending(&self, tally: &mut Tally, auth_req_id: &str) -> Result<(), String> {
        let reply = self.poll(tally, auth_req_id).await?;
        match reply.json()["error"].as_str() {
            Some("authorization_pending") if reply.status == 400 => Ok(()),
            _ => Err(format!("token: {}", reply.describe())),
        }
    }

    /// Alice's phone's approval of `txn`: an ES256 JWT with kid alice-phone, valid a minute.
    fn decision(&self, txn: &str) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        Ok(jose::sign_with_key(
            &self.key,
            &json!({"alg": "ES256", "typ": "JWT", "kid": "alice-phone"}),
            &json!({"txn": txn, "action": "approve", "iat": now, "exp": now + 60,
                    "jti": OsRandom.token(16)}),
        ))
    }

    /// Alice's phone: the txn of the push carrying `binding`, approved with its device key.
    async fn decide(&self, tally: &mut Tally, binding: &str) -> Result<(), String> {
        let reply = self
            .send(
                tally,
                "_local/pushes",
                hyper::Method::GET,
                // The push carrying this flow's unique binding message (binding messages are
                // L<worker>-<seq>: nothing to escape).
                &format!("{}&binding_message={binding}&limit=1", self.pushes_target),
                None,
                Vec::new(),
            )
            .await?;
        if reply.status != 200 {
            return Err(format!("_local/pushes: {}", reply.describe()));
        }
        let pushes = reply.json();
        let pushes = pushes.as_array().cloned().unwrap_or_default();
        tally.push_list_len = tally.push_list_len.max(pushes.len());
        let txn = pushes
            .iter()
            .find(|p| p["message"]["binding_message"].as_str() == Some(binding))
            .and_then(|p| p["message"]["txn"].as_str())
            .ok_or_else(|| "_local/pushes: no push for the request".to_owned())?
            .to_owned();
        self.post_decision(tally, "device/decision", "/device/decision", &txn)
            .await
    }

    /// POSTs alice's phone's approval of `txn` to `path`; 200 or 204 is success.
    async fn post_decision(
        &self,
        tally: &mut Tally,
        endpoint: &'static str,
        path: &str,
        txn: &str,
    ) -> Result<(), String> {
        let jwt = self.decision(txn)?;
        let reply = self
            .send(
                tally,
                endpoint,
                hyper::Method::POST,
                path,
                Some("application/jwt"),
                jwt.into_bytes(),
            )
            .await?;
        if reply.status != 204 && reply.status != 200 {
            return Err(format!("{endpoint}: {}", reply.describe()));
        }
        Ok(())
    }
}

/// Notification bodies by auth_req_id, with the time each arrived.
type Callbacks = Arc<std::sync::Mutex<HashMap<String, (Instant, Value)>>>;

/// A ping or push client's notification endpoint on 127.0.0.1: every POST's JSON body is kept
/// by its auth_req_id and answered 204. Returns the endpoint's URL.
async fn receiver(callbacks: Callbacks) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("notification receiver: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("notification receiver: {e}"))?
        .port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let callbacks = callbacks.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let callbacks = callbacks.clone();
                async move {
                    let body = BodyExt::collect(request.into_body()).await?.to_bytes();
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let (Some(id), Ok(mut map)) =
                        (body["auth_req_id"].as_str(), callbacks.lock())
                    {
                        map.insert(id.to_owned(), (Instant::now(), body.clone()));
                    }
                    let mut reply = hyper::Response::new(Full::new(Bytes::new()));
                    *reply.status_mut() = hyper::StatusCode::NO_CONTENT;
                    Ok::<_, hyper::Error>(reply)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://127.0.0.1:{port}/cb"))
}

/// Registers a client of delivery `mode` notified at `endpoint` (the OP's open registration);
/// its `Authorization: Basic` header.
async fn register(
    client: &HttpClient,
    api: &str,
    mode: &str,
    endpoint: &str,
) -> Result<String, String> {
    let body = json!({
        "client_name": format!("ciba-load {mode}"),
        "backchannel_token_delivery_mode": mode,
        "backchannel_client_notification_endpoint": endpoint,
    });
    let request = hyper::Request::post(format!("{api}/register"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("register: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("register: {e}"))?
        .to_bytes();
    let registered: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (
        registered["client_id"].as_str(),
        registered["client_secret"].as_str(),
    ) {
        (Some(id), Some(secret)) if status.is_success() => Ok(format!(
            "Basic {}",
            STANDARD.encode(format!("{id}:{secret}"))
        )),
        _ => Err(format!("register: {status} {registered}")),
    }
}

async fn worker(shared: Arc<Shared>, index: usize) -> Tally {
    let mut tally = Tally::default();
    if !shared.count_urls.is_empty() {
        // The OP's start-up work (its first expiry sweep) is not the first flow's.
        match shared.settled().await {
            Ok(now) => tally.counted = now,
            Err(e) => {
                tally.errors.insert(format!("counters: {e}"), 1);
                return tally;
            }
        }
    }
    let mut seq = 0u64;
    while Instant::now() < shared.deadline {
        if let Some(left) = &shared.flows_left {
            use std::sync::atomic::Ordering;
            if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
        }
        seq += 1;
        match shared.flow(&mut tally, index, seq).await {
            Ok(()) => tally.flows += 1,
            Err(e) => {
                *tally.errors.entry(e).or_default() += 1;
                // Do not spin on a refusing or absent server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index]
}

/// `VmHWM` and `VmRSS` of a process, in kB.
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// CPU time a process has used so far, in milliseconds: (user + system, system), from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks of 1/100 s on Linux). The system part is
/// mostly the kernel's loopback TCP, which any server pays for the same requests.
fn cpu_ms_of(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user = fields.get(11)?.parse::<u64>().ok()?;
    let system = fields.get(12)?.parse::<u64>().ok()?;
    Some(((user + system) * 10, system * 10))
}

fn markdown(result: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "**{}**: {} flows in {:.1} s with {} workers = **{:.1} flows/s**; {} token polls; {} errors",
        result["label"].as_str().unwrap_or(""),
        result["flows"],
        result["seconds"].as_f64().unwrap_or(0.0),
        result["concurrency"],
        result["flows_per_second"].as_f64().unwrap_or(0.0),
        result["token_polls"],
        result["error_count"],
    ));
    if let Some(hwm) = result["server_peak_rss_kb"].as_u64() {
        out.push_str(&format!("; server peak RSS {:.1} MiB", hwm as f64 / 1024.0));
    }
    if let Some(cpu) = result["server_cpu_us_per_flow"].as_f64() {
        out.push_str(&format!("; server CPU {cpu:.0} µs per flow"));
    }
    out.push_str(
        "\n\n| endpoint | requests | p50 (µs) | p99 (µs) | max (µs) |\n|---|---:|---:|---:|---:|\n",
    );
    if let Some(endpoints) = result["endpoints"].as_object() {
        for (name, e) in endpoints {
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                e["count"], e["p50_us"], e["p99_us"], e["max_us"]
            ));
        }
    }
    if let Some(errors) = result["errors"].as_object().filter(|e| !e.is_empty()) {
        out.push_str("\n| error | count |\n|---|---:|\n");
        for (error, n) in errors {
            out.push_str(&format!("| {error} | {n} |\n"));
        }
    }
    out
}

async fn run(options: Options) -> Result<Value, String> {
    let key_pem =
        std::fs::read_to_string(&options.key).map_err(|e| format!("{}: {e}", options.key))?;
    let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| format!("{}: {e}", options.key))?;
    let (id, secret) = match options.target {
        Target::Ours => ("demo-rp", "demo-rp-secret"),
        Target::Node => ("bench-rp", "bench-rp-secret"),
    };
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(options.concurrency)
        .build_http();
    let callbacks = Callbacks::default();
    let authorization = match options.shape.notified() {
        Some(mode) => {
            let endpoint = receiver(callbacks.clone()).await?;
            register(&client, &options.api, mode, &endpoint).await?
        }
        None => format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
    };
    let cpu_before = options.pid.and_then(cpu_ms_of);
    let started = Instant::now();
    let shared = Arc::new(Shared {
        client,
        api: options.api.clone(),
        target: options.target,
        shape: options.shape,
        key,
        authorization,
        callbacks,
        deadline: started + options.duration,
        flows_left: options.flows.map(std::sync::atomic::AtomicU64::new),
        count_urls: options.count_urls.clone(),
        pushes_target: "/_local/pushes?user=alice".into(),
    });
    let workers: Vec<_> = (0..options.concurrency)
        .map(|i| tokio::spawn(worker(shared.clone(), i)))
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.map_err(|e| e.to_string())?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut endpoints = serde_json::Map::new();
    for (endpoint, values) in &tally.latencies {
        let mut values = values.clone();
        values.sort_unstable();
        endpoints.insert(
            (*endpoint).into(),
            json!({
                "count": values.len(),
                "p50_us": percentile(&values, 50),
                "p99_us": percentile(&values, 99),
                "max_us": values.last().copied().unwrap_or(0),
            }),
        );
    }
    let error_count: u64 = tally
        .errors
        .iter()
        .filter(|(e, _)| !e.ends_with("(polled again)"))
        .map(|(_, n)| n)
        .sum();
    let memory = options.pid.and_then(memory_of);
    let cpu = options
        .pid
        .and_then(cpu_ms_of)
        .zip(cpu_before)
        .map(|(after, before)| {
            (
                after.0.saturating_sub(before.0),
                after.1.saturating_sub(before.1),
            )
        });
    let (cpu_ms, sys_ms) = (cpu.map(|c| c.0), cpu.map(|c| c.1));
    let per_flow = |ms: Option<u64>| {
        ms.filter(|_| tally.flows > 0)
            .map(|ms| ms as f64 * 1000.0 / tally.flows as f64)
    };
    let aws: serde_json::Map<String, Value> = tally
        .aws_calls
        .iter()
        .map(|(endpoint, calls)| {
            let (read, write) = tally.aws_units.get(endpoint).copied().unwrap_or_default();
            let requests = tally.latencies.get(endpoint).map_or(0, Vec::len);
            (
                (*endpoint).to_owned(),
                json!({
                    "requests": requests,
                    "calls": calls,
                    "calls_after_answer": tally.aws_after.get(endpoint),
                    "read_units": read,
                    "write_units": write,
                    "rounds": tally.aws_rounds.get(endpoint),
                    "delay_ms_on_path": tally.aws_delay_ms.get(endpoint),
                    "units_after_answer": tally.aws_after_units.get(endpoint),
                    "item_writes": tally.aws_item_writes.get(endpoint),
                }),
            )
        })
        .collect();
    Ok(json!({
        "label": options.label,
        "api": options.api,
        "shape": options.shape.name(),
        "concurrency": options.concurrency,
        "driver_threads": options.threads,
        "seconds": seconds,
        "flows": tally.flows,
        "flows_per_second": tally.flows as f64 / seconds,
        "token_polls": tally.polls,
        "error_count": error_count,
        "errors": tally.errors,
        "endpoints": endpoints,
        "push_list_len_max": tally.push_list_len,
        "server_pid": options.pid,
        "server_peak_rss_kb": memory.map(|m| m.0),
        "server_rss_kb": memory.map(|m| m.1),
        "aws": aws,
        "server_cpu_ms": cpu_ms,
        "server_cpu_us_per_flow": per_flow(cpu_ms),
        "server_sys_ms": sys_ms,
        "server_sys_us_per_flow": per_flow(sys_ms),
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(stop) => return stop.exit("ciba-load"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ciba-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_path = options.json.clone();
    let markdown_path = options.markdown.clone();
    let result = match runtime.block_on(run(options)) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("ciba-load: {message}");
            return ExitCode::FAILURE;
        }
    };
    let text = serde_json::to_string_pretty(&result).unwrap_or_default();
    println!("{text}");
    let table = markdown(&result);
    eprintln!("{table}");
    for (path, contents) in [(json_path, text), (markdown_path, table)] {
        if let Some(path) = path
            && let Err(e) = std::fs::write(&path, contents)
        {
            eprintln!("ciba-load: {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if result["flows"].as_u64() == Some(0) {
        eprintln!("ciba-load: no flow completed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_is_the_usage_and_a_bad_value_is_a_mistake() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(matches!(parse(&args(&["--help"])), Err(Stop::Help(u)) if u == USAGE));
        assert!(matches!(
            parse(&args(&["--api", "http://10.0.0.1:8080"])),
            Err(Stop::Usage(m)) if m.contains("only loopback")
        ));
    }
}
