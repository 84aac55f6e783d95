//! Interoperability with a real relying-party stack: `tests/interop/rp.mjs` runs the bank's RP on
//! `openid-client` and `jose` (pinned in `tests/interop/package-lock.json`) against the running
//! local API: discovery, CIBA approved by the device simulator, the ID token as openid-client
//! validates it, introspection as the resource server, revocation of a refresh token's family,
//! refresh-token reuse, and RFC 9068 JWT access tokens verified against `/jwks`.
//!
//! The second test drives the browser authenticator (`/_local/authenticator`) in Debian's
//! Chromium with playwright-core (`tests/interop/authenticator.mjs`) against the local API on
//! DynamoDB Local: a payment approved in the page and one by `ciba-device`, each proved by the
//! tokens, introspection and the ID token's `txn_approval`, and tampered hashes refused.
//!
//! Needs node 20+ and `npm ci --prefix tests/interop` (tests/run does it), and for the browser
//! test `/usr/bin/chromium`. Without them the tests skip, unless `CIBA_REQUIRE_INTEROP=1` (as
//! inside tests/run), where they fail.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The packages rp.mjs imports; `None` (the test skips) when they are not installed, unless
/// `CIBA_REQUIRE_INTEROP=1`, where that is a failure.
fn interop_packages() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let modules = dir.join("node_modules");
    if ["openid-client", "jose", "playwright-core"]
        .iter()
        .all(|package| modules.join(package).join("package.json").is_file())
    {
        return Some(dir);
    }
    if require_interop() {
        panic!(
            "CIBA_REQUIRE_INTEROP=1 but {} lacks openid-client, jose or playwright-core: run \
             `npm ci --prefix tests/interop` (tests/run does)",
            modules.display()
        );
    }
    eprintln!("skipping: tests/interop/node_modules missing (npm ci --prefix tests/interop)");
    None
}

fn require_interop() -> bool {
    std::env::var("CIBA_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Debian's Chromium, which playwright-core drives; `None` (skip) without it, unless required.
fn chromium() -> Option<&'static str> {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if Path::new(CHROMIUM).is_file() {
        return Some(CHROMIUM);
    }
    assert!(
        !require_interop(),
        "CIBA_REQUIRE_INTEROP=1 but {CHROMIUM} is missing: apt-get install chromium (tests/run does)"
    );
    eprintln!("skipping: {CHROMIUM} missing (apt-get install chromium)");
    None
}

/// The local API binary on a free loopback port, in-memory store, seeded from tests/seed.json,
/// requiring DPoP nonces (which openid-client picks up from `use_dpop_nonce` answers); stopped
/// when dropped, so a failing assertion does not leave it running.
struct LocalApi {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LocalApi {
    /// On the in-memory store, requiring DPoP nonces.
    fn start() -> Self {
        Self::start_with(
            &["--store", "memory", "--seed", "tests/seed.json"],
            &[("DPOP_NONCE", "required")],
        )
    }

    /// On a fresh table of DynamoDB Local (`CIBA_DYNAMODB_ENDPOINT`), seeded, `/_local/*`
    /// served; on the in-memory store when DynamoDB Local is not there and not required.
    fn start_on_dynamodb() -> Self {
        let Ok(endpoint) = std::env::var("CIBA_DYNAMODB_ENDPOINT") else {
            assert!(
                std::env::var("CIBA_REQUIRE_DYNAMODB").as_deref() != Ok("1"),
                "CIBA_REQUIRE_DYNAMODB=1 but CIBA_DYNAMODB_ENDPOINT is not set"
            );
            eprintln!(
                "DynamoDB Local not configured: the browser test runs on the in-memory store"
            );
            return Self::start_with(&["--store", "memory", "--seed", "tests/seed.json"], &[]);
        };
        let table = format!(
            "authenticator-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        Self::start_with(
            &[
                "--store",
                "dynamodb",
                "--table",
                &table,
                "--seed",
                "tests/seed.json",
                "--seed-dynamodb",
                "--local-endpoints-on-dynamodb",
            ],
            &[("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str())],
        )
    }

    fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("interop-op-{port}.log"));
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ciba-local"))
            .args(["--port", &port.to_string()])
            .args(["--issuer", &format!("http://127.0.0.1:{port}")])
            .args(args)
            .args(["--push", "recording"])
            .envs(envs.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("ciba-local starts");
        let mut api = LocalApi { child, port, log };
        let listening = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            listening,
            "ciba-local did not listen on 127.0.0.1:{port} within 10 s; its output:\n{}",
            api.output()
        );
        assert!(
            api.child.try_wait().unwrap().is_none(),
            "ciba-local exited; its output:\n{}",
            api.output()
        );
        api
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_file(&self.log).ok();
    }
}

/// Runs `script` under node against `api` (with the device simulator's path, then `more`
/// arguments) and answers its steps; fails the test, with the script's and the local API's
/// output, unless it exits 0 and prints `done`.
fn run_node(
    api: &LocalApi,
    script: &Path,
    more: &[&std::ffi::OsStr],
    done: &str,
    what: &str,
) -> String {
    let run = Command::new("node")
        .arg(script)
        .arg(api.url())
        .arg(env!("CARGO_BIN_EXE_ciba-device"))
        .args(more)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("node runs (node 20+ on PATH)");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains(done),
        "{what} failed ({}):\n--- its steps\n{stdout}\n--- its error\n{stderr}\n--- the local \
         API's output\n{}",
        run.status,
        api.output()
    );
    stdout
}

#[test]
fn openid_client_and_jose_get_introspect_revoke_and_refresh_tokens_as_the_banks_rp() {
    let Some(interop) = interop_packages() else {
        return;
    };
    let api = LocalApi::start();
    let stdout = run_node(
        &api,
        &interop.join("rp.mjs"),
        &[],
        "interop: every step passed",
        "the RP on openid-client and jose",
    );
    println!("{stdout}");
}

#[test]
fn a_payment_approved_in_the_browser_authenticator_and_by_the_cli_is_proved_by_its_tokens() {
    let Some(interop) = interop_packages() else {
        return;
    };
    if chromium().is_none() {
        return;
    }
    let api = LocalApi::start_on_dynamodb();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("authenticator-payment.png");
    let stdout = run_node(
        &api,
        &interop.join("authenticator.mjs"),
        &[screenshot.as_os_str()],
        "authenticator: every step passed",
        "the browser authenticator flow",
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was taken");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    println!("{stdout}");
}
