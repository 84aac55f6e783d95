//! Notification delivery as AWS runs it: the stream consumer queues, the delivery function makes
//! one attempt per message, all of a batch at once, retries with a back-off and parks what keeps
//! failing. One client's dead endpoint never delays another's notification; nothing is lost.
//! The SQS cases run on moto (skipped without `CIBA_SQS_ENDPOINT`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use ciba_shared::callback_policy::AddressPolicy;
use ciba_shared::config::Config;
use ciba_shared::context::Ctx;
use ciba_shared::domain::{AuthMethod, AuthRequest, Client, Decision, DeliveryMode, Status};
use ciba_shared::notify::{
    HttpCallbackSender, Notification, NotificationQueue, Notifier, NotifierSettings,
    SqsNotificationQueue,
};
use ciba_shared::ports::{LocalSigner, OsRandom, Random};
use ciba_shared::secret::Secret;
use ciba_shared::store::{JtiUse, MemoryStore, PendingLimit, Store};
use ciba_testkit::{FixedClock, RecordingPushSender, RecordingQueue, StaticResolver};
use common::callback::CallbackServer;
use common::emulator;
use serde_json::json;

const T0: i64 = 1_800_000_000;

/// A store with a ping client per endpoint and one approved ping request of each.
struct World {
    store: Arc<dyn Store>,
    notifier: Notifier,
}

/// An OP that runs locally: the RPs of these tests listen on loopback.
const LOCAL_ISSUER: &str = "http://127.0.0.1:8080";
const PUBLIC_ISSUER: &str = "https://op.example.com";

impl World {
    async fn new(endpoints: &[(&str, &str)], attempts: u32) -> Self {
        Self::on(LOCAL_ISSUER, StaticResolver::default(), endpoints, attempts).await
    }

    /// The world of the OP `issuer`, whose callbacks resolve names with `dns`.
    async fn on(
        issuer: &str,
        dns: StaticResolver,
        endpoints: &[(&str, &str)],
        attempts: u32,
    ) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for (i, (client_id, endpoint)) in endpoints.iter().enumerate() {
            let client = Client {
                client_id: (*client_id).into(),
                client_name: None,
                client_secret_hash: None,
                token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
                jwks: None,
                backchannel_token_delivery_mode: DeliveryMode::Ping,
                backchannel_client_notification_endpoint: Some((*endpoint).into()),
                backchannel_authentication_request_signing_alg: None,
                backchannel_user_code_parameter: false,
                resource_server: false,
                access_token_format: Default::default(),
                fapi: false,
                authorization_details_types: None,
                tls: Default::default(),
            };
            store.clients().put_client(&client).await.unwrap();
            let request = AuthRequest {
                client_id: (*client_id).into(),
                client_notification_token: Some("cnt".into()),
                delivery_mode: DeliveryMode::Ping,
                created_at: T0,
                expires_at: T0 + 600,
                ..ciba_testkit::store_suite::request(&format!("r-{client_id}"))
            };
            store
                .requests()
                .create_auth_request(&request, None, PendingLimit::NONE)
                .await
                .unwrap();
            let jti = JtiUse {
                scope: "decision#d1".into(),
                jti: format!("j{i}"),
                expires_at: T0 + 300,
            };
            store
                .requests()
                .decide(&request.auth_req_id, Decision::Approve, T0 + 1, &jti)
                .await
                .unwrap();
        }
        let config = Config::new(issuer).unwrap();
        let dns: Arc<StaticResolver> = Arc::new(dns);
        let callback = HttpCallbackSender::with_resolver(
            Duration::from_secs(5),
            AddressPolicy::for_op(config.runs_locally()),
            dns.clone(),
        )
        .unwrap();
        let ctx = Ctx {
            config: Arc::new(config),
            store: store.clone(),
            clock: Arc::new(FixedClock::at_secs(T0 + 2)),
            random: Arc::new(OsRandom),
            signer: Arc::new(LocalSigner::generate()),
            push: Arc::new(RecordingPushSender::default()),
            resolver: dns,
            keys: None,
        };
        let notifier = Notifier {
            ctx,
            callback: Arc::new(callback),
            settings: NotifierSettings {
                attempts,
                first_retry: Duration::from_millis(0),
                push_token_key: Secret::new("k".repeat(32)),
            },
        };
        Self { store, notifier }
    }

    async fn notified(&self, auth_req_id: &str) -> bool {
        let request = self.store.requests().get_auth_request(auth_req_id).await;
        request.unwrap().unwrap().notified_at.is_some()
    }
}

/// A message as the SQS event source hands it to the delivery function.
fn message(id: &str, auth_req_id: &str, receive_count: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.into());
    message.receipt_handle = Some(format!("receipt-{id}"));
    message.body = Some(
        Notification {
            auth_req_id: auth_req_id.into(),
        }
        .body(),
    );
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    message
}

fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages;
    event
}

/// Accepts connections and never answers: a black-holed notification endpoint.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_delays_no_other_clients_notification() {
    let healthy = CallbackServer::start(&[]).await;
    let dead = black_hole().await;
    let world = Arc::new(World::new(&[("dead-rp", &dead), ("good-rp", &healthy.url)], 3).await);
    let queue = Arc::new(RecordingQueue::default());
    // The black-holed request first, as the stream would have it.
    let event = batch(vec![
        message("m1", "r-dead-rp", 1),
        message("m2", "r-good-rp", 1),
    ]);
    let run = {
        let (world, queue) = (world.clone(), queue.clone());
        tokio::spawn(
            async move { deliverer::handle(&world.notifier, queue.as_ref(), &event).await },
        )
    };
    let got = healthy.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, json!({"auth_req_id": "r-good-rp"}));
    assert!(
        !run.is_finished(),
        "the healthy client was told while the dead endpoint's attempt still hung"
    );
    let response = run.await.unwrap();
    // One attempt, then the message is handed back to the queue for its back-off.
    assert_eq!(
        failed_ids(&response),
        ["m1"],
        "only the dead endpoint's message comes back"
    );
    assert_eq!(
        queue.retried.lock().unwrap().as_slice(),
        [("receipt-m1".to_owned(), Duration::from_millis(0))]
    );
    assert!(world.notified("r-good-rp").await);
    assert!(!world.notified("r-dead-rp").await);
}

#[tokio::test]
async fn a_notification_that_keeps_failing_is_parked_whole_with_its_reason() {
    let failing = CallbackServer::start(&[500, 500, 500]).await;
    let world = World::new(&[("rp", &failing.url)], 2).await;
    let queue = RecordingQueue::default();
    let first = deliverer::handle(
        &world.notifier,
        &queue,
        &batch(vec![message("m1", "r-rp", 1)]),
    )
    .await;
    assert_eq!(failed_ids(&first), ["m1"]);
    assert!(queue.parked.lock().unwrap().is_empty());
    let last = deliverer::handle(
        &world.notifier,
        &queue,
        &batch(vec![message("m1", "r-rp", 2)]),
    )
    .await;
    assert!(failed_ids(&last).is_empty(), "parked, so done with");
    let parked = queue.parked.lock().unwrap().clone();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0.auth_req_id, "r-rp");
    assert_eq!(parked[0].1, "2 attempts failed, the last answered 500");
    assert!(!world.notified("r-rp").await);
}

#[tokio::test]
async fn a_refusal_for_good_is_parked_at_once() {
    let refusing = CallbackServer::start(&[404]).await;
    let world = World::new(&[("rp", &refusing.url)], 5).await;
    let queue = RecordingQueue::default();
    let response = deliverer::handle(
        &world.notifier,
        &queue,
        &batch(vec![message("m1", "r-rp", 1)]),
    )
    .await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(queue.parked.lock().unwrap()[0].1, "answered 404");
    assert!(queue.retried.lock().unwrap().is_empty());
}

/// A loopback port that counts the connections made to it and answers none.
async fn watched_port() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, connections)
}

/// The reasons of the parked notifications, by request id.
fn parked_reasons(queue: &RecordingQueue) -> Vec<(String, String)> {
    let mut parked: Vec<(String, String)> = queue
        .parked
        .lock()
        .unwrap()
        .iter()
        .map(|(n, reason)| (n.auth_req_id.clone(), reason.clone()))
        .collect();
    parked.sort();
    parked
}

#[tokio::test]
async fn a_public_op_refuses_names_resolving_to_internal_addresses_and_connects_nowhere() {
    let (port, connections) = watched_port().await;
    let dns = StaticResolver::default()
        .with("loopback.example.com", &["127.0.0.1"])
        .with("private.example.com", &["10.0.0.5", "::ffff:127.0.0.1"]);
    let world = World::on(
        PUBLIC_ISSUER,
        dns,
        &[
            (
                "loop-rp",
                &format!("https://loopback.example.com:{port}/cb"),
            ),
            (
                "private-rp",
                &format!("https://private.example.com:{port}/cb"),
            ),
        ],
        5,
    )
    .await;
    let queue = RecordingQueue::default();
    let event = batch(vec![
        message("m1", "r-loop-rp", 1),
        message("m2", "r-private-rp", 1),
    ]);
    let response = deliverer::handle(&world.notifier, &queue, &event).await;
    assert!(failed_ids(&response).is_empty(), "parked at once, no retry");
    assert!(queue.retried.lock().unwrap().is_empty());
    let parked = parked_reasons(&queue);
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(parked[0].0, "r-loop-rp");
    assert_eq!(
        parked[0].1,
        "not called: the endpoint's host loopback.example.com resolves only to addresses that are not public: [127.0.0.1]"
    );
    assert_eq!(parked[1].0, "r-private-rp");
    assert!(parked[1].1.contains("10.0.0.5"), "{parked:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing was sent");
    assert!(!world.notified("r-loop-rp").await);
}

#[tokio::test]
async fn a_public_op_refuses_an_ip_literal_endpoint_registered_before_the_policy() {
    let (port, connections) = watched_port().await;
    let endpoint = format!("http://127.0.0.1:{port}/cb");
    let world = World::on(
        PUBLIC_ISSUER,
        StaticResolver::default(),
        &[("rp", &endpoint)],
        5,
    )
    .await;
    let queue = RecordingQueue::default();
    deliverer::handle(
        &world.notifier,
        &queue,
        &batch(vec![message("m1", "r-rp", 1)]),
    )
    .await;
    assert_eq!(
        parked_reasons(&queue),
        [(
            "r-rp".to_owned(),
            "not called: the endpoint's address 127.0.0.1 is not public".to_owned()
        )]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test]
async fn an_op_that_runs_locally_still_delivers_to_a_name_resolving_to_loopback() {
    let rp = CallbackServer::start(&[]).await;
    let endpoint = rp.url.replace("127.0.0.1", "rp.localhost");
    let dns = StaticResolver::default().with("rp.localhost", &["127.0.0.1"]);
    let world = World::on(LOCAL_ISSUER, dns, &[("rp", &endpoint)], 3).await;
    let queue = RecordingQueue::default();
    deliverer::handle(
        &world.notifier,
        &queue,
        &batch(vec![message("m1", "r-rp", 1)]),
    )
    .await;
    assert_eq!(rp.settle().await.len(), 1);
    assert!(world.notified("r-rp").await);
}

#[tokio::test]
async fn a_notification_delivered_before_is_not_sent_again() {
    let rp = CallbackServer::start(&[]).await;
    let world = World::new(&[("rp", &rp.url)], 3).await;
    let queue = RecordingQueue::default();
    let event = batch(vec![message("m1", "r-rp", 1)]);
    deliverer::handle(&world.notifier, &queue, &event).await;
    deliverer::handle(&world.notifier, &queue, &event).await;
    assert_eq!(rp.settle().await.len(), 1);
    assert_eq!(
        world
            .store
            .requests()
            .get_auth_request("r-rp")
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Approved,
        "a ping client redeems at the token endpoint itself"
    );
}

/// The notification queue and its dead-letter queue, fresh on moto.
async fn sqs_queues() -> Option<(aws_sdk_sqs::Client, String, String)> {
    let endpoint = emulator::endpoint("SQS")?;
    let client = aws_sdk_sqs::Client::new(&emulator::config(&endpoint).await);
    let name = format!("ciba-{}", OsRandom.token(8));
    let create = |name: String| {
        let client = client.clone();
        async move {
            client
                .create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let queue = create(name.clone()).await;
    let dead = create(format!("{name}-dlq")).await;
    Some((client, queue, dead))
}

/// Receives up to ten messages as the SQS event source would hand them over.
async fn receive(client: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<SqsMessage> {
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id().map(str::to_owned);
            message.receipt_handle = m.receipt_handle().map(str::to_owned);
            message.body = m.body().map(str::to_owned);
            for (name, value) in m.attributes().into_iter().flatten() {
                message
                    .attributes
                    .insert(name.as_str().to_owned(), value.clone());
            }
            message
        })
        .collect()
}

#[tokio::test]
async fn queued_notifications_are_retried_parked_and_redriven_on_sqs() {
    let Some((client, queue_url, dead_url)) = sqs_queues().await else {
        return;
    };
    let queue = SqsNotificationQueue::new(client.clone(), &queue_url, &dead_url);
    let failing = CallbackServer::start(&[500, 500]).await;
    let world = World::new(&[("rp", &failing.url)], 2).await;

    // The stream consumer's side: eleven notifications cross SendMessageBatch's limit of ten.
    let many: Vec<Notification> = (0..11)
        .map(|i| Notification {
            auth_req_id: format!("other-{i}"),
        })
        .chain([Notification {
            auth_req_id: "r-rp".into(),
        }])
        .collect();
    assert_eq!(queue.enqueue(&many).await.unwrap(), 12);
    let mut received = Vec::new();
    for _ in 0..5 {
        received.extend(receive(&client, &queue_url).await);
    }
    assert_eq!(received.len(), 12);

    // The delivery function's side: the unknown requests are done with at once, ours fails.
    let first = deliverer::handle(&world.notifier, &queue, &batch(received)).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    // The back-off (0 here) made it visible again, with its receive count raised.
    let again = receive(&client, &queue_url).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attributes["ApproximateReceiveCount"], "2");
    let last = deliverer::handle(&world.notifier, &queue, &batch(again)).await;
    assert!(last.batch_item_failures.is_empty());

    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].auth_req_id, "r-rp");
    assert_eq!(
        letters[0].reason,
        "2 attempts failed, the last answered 500"
    );

    // The operator redrives it once the client's endpoint is back: delivered.
    queue.redrive(&letters[0]).await.unwrap();
    let redriven = receive(&client, &queue_url).await;
    assert_eq!(redriven.len(), 1);
    let delivered = deliverer::handle(&world.notifier, &queue, &batch(redriven)).await;
    assert!(delivered.batch_item_failures.is_empty());
    assert!(world.notified("r-rp").await);
    assert_eq!(failing.received().len(), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = client
        .receive_message()
        .queue_url(&dead_url)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    assert!(
        out.messages().is_empty(),
        "the dead letter is gone once redriven"
    );
}
