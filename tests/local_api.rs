//! The local API's own guards: against a DynamoDB table (DynamoDB Local) the seed's demo secrets
//! go in only when asked for and the unauthenticated `/_local` endpoints are not served; and the
//! running server answers only requests whose `Host` names it (no DNS rebinding).

mod common;

use ciba_local::event::HttpRequest;
use ciba_local::options::{self, Options};
use ciba_shared::ports::{Clock, SystemClock};
use common::emulator;

async fn has_demo_client(api: &ciba_local::LocalApi) -> bool {
    let clients = api.ctx.store.clients();
    clients.get_client("demo-rp").await.unwrap().is_some()
}

async fn local_api(args: &[&str]) -> ciba_local::LocalApi {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let options = Options::parse(&args, &|_| None).expect("valid options");
    let (api, _) = options::build(&options, options::system_clock())
        .await
        .expect("the local API starts");
    api
}

/// The only test of this binary that reads the environment in-process: it sets the DynamoDB
/// endpoint, as a developer's shell does.
#[tokio::test]
async fn a_dynamodb_table_gets_the_seed_and_local_endpoints_only_when_asked_for() {
    let Some(endpoint) = emulator::endpoint("DYNAMODB") else {
        return;
    };
    // SAFETY: no other test of this binary reads the environment in-process.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", endpoint);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "local");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "local");
    }
    let table = format!("local-api-{}", SystemClock.now_ms());
    let plain = local_api(&["--store", "dynamodb", "--table", &table]).await;
    assert!(
        !has_demo_client(&plain).await,
        "the demo seed was imported without --seed-dynamodb"
    );
    let req = HttpRequest::new("POST", "/_local/enrollment-codes")
        .body("application/json", r#"{"user": "alice"}"#)
        .to_lambda("t", SystemClock.now_ms())
        .unwrap();
    assert_eq!(plain.handle(req).await.status(), 404);

    let seeded = local_api(&["--store", "dynamodb", "--table", &table, "--seed-dynamodb"]).await;
    assert!(
        has_demo_client(&seeded).await,
        "--seed-dynamodb imports the seed"
    );

    let explicit = [
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--seed",
        "tests/seed.json",
    ];
    let args: Vec<String> = explicit.iter().map(|a| (*a).to_owned()).collect();
    assert!(
        Options::parse(&args, &|_| None).is_err(),
        "--seed into a table without --seed-dynamodb is a mistake"
    );
}

/// `GET /.well-known/openid-configuration` to the running `ciba-local` with this `Host` header;
/// the status line's code.
fn status_with_host(port: u16, host: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_running_local_api_refuses_a_host_that_is_not_its_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-local"))
        .args(["--port", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let outcome = started.then(|| {
        (
            status_with_host(port, &format!("127.0.0.1:{port}")),
            status_with_host(port, &format!("localhost:{port}")),
            status_with_host(port, &format!("rebound.attacker.example:{port}")),
        )
    });
    server.kill().ok();
    server.wait().ok();
    assert_eq!(outcome, Some((200, 200, 421)));
}
