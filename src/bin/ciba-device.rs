//! The device simulator: plays the user's authenticator app against the local API.
//!
//!   ciba-device keygen --out KEY.pem
//!   ciba-device enroll  --code CODE --key KEY.pem [--push-token T] [--platform GCM] [--api URL]
//!   ciba-device pushes  --user HINT [--api URL]
//!   ciba-device show    --user HINT --device-id ID --key KEY.pem [--txn TXN] [--api URL]
//!   ciba-device approve --user HINT --device-id ID --key KEY.pem [--txn TXN] [--api URL]
//!   ciba-device deny    --user HINT --device-id ID --key KEY.pem [--txn TXN] [--api URL]
//!
//! Before deciding, it fetches what the request shows (`POST /device/transaction`, signed with
//! the device key), prints it, and signs its `txn_hash` into the decision, as an app does.

use std::process::ExitCode;

use ciba_local::cli::{self, Stop};
use ciba_local::client;
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random, public_jwk_with_kid};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{Value, json};

const USAGE: &str = "\
ciba-device: the user's authenticator app, simulated against the local API

  ciba-device keygen --out KEY.pem
      writes a new P-256 device key
  ciba-device enroll --code CODE --key KEY.pem [--push-token T] [--platform GCM|APNS|APNS_SANDBOX]
      enrols the key (generated when KEY.pem does not exist) with a one-time code; prints the
      device id
  ciba-device pushes --user HINT
      lists the pushes sent to the user's devices
  ciba-device show --user HINT --device-id ID --key KEY.pem [--txn TXN]
      fetches what the request TXN (default: the latest push to that device) shows: client,
      binding message, scope, authorization_details, expiry
  ciba-device approve|deny --user HINT --device-id ID --key KEY.pem [--txn TXN]
      shows the request as above (on standard error), then signs the decision on it, with the
      txn_hash of what was shown, and sends it

  --api URL   the local API (CIBA_API, default http://127.0.0.1:8080)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(stop) => stop.exit("ciba-device"),
    }
}

/// The two decisions a user can make on a push.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The decision JWT's `action` claim, which is also the command's name.
    fn action(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        }
    }
}

fn run(args: &[String]) -> Result<(), Stop> {
    let (command, rest) = cli::command(args, USAGE)?;
    let flags = cli::flags(rest, USAGE)?;
    let flag = |name: &str| flags.required(name);
    let api = flags.get("api").cloned().unwrap_or_else(|| {
        std::env::var("CIBA_API").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
    });
    match command {
        "keygen" => Ok(keygen(&flag("out")?)?),
        "enroll" => {
            let key_path = flag("key")?;
            if !std::path::Path::new(&key_path).exists() {
                keygen(&key_path)?;
            }
            let push_token = flags
                .get("push-token")
                .cloned()
                .unwrap_or_else(|| format!("simulator-{}", OsRandom.token(24)));
            let platform = flags
                .get("platform")
                .cloned()
                .unwrap_or_else(|| "GCM".into());
            let code = flag("code")?;
            Ok(enroll(
                &api,
                &load_key(&key_path)?,
                &code,
                &push_token,
                &platform,
            )?)
        }
        "pushes" => {
            println!(
                "{}",
                serde_json::to_string_pretty(&pushes(&api, &flag("user")?)?).unwrap_or_default()
            );
            Ok(())
        }
        "show" | "approve" | "deny" => {
            let key = load_key(&flag("key")?)?;
            let device_id = flag("device-id")?;
            let txn = match flags.get("txn") {
                Some(txn) => txn.clone(),
                None => latest_txn(&api, &flag("user")?, &device_id)?,
            };
            let details = transaction(&api, &key, &device_id, &txn)?;
            let shown = serde_json::to_string_pretty(&details).unwrap_or_default();
            let decision = match command {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                _ => {
                    println!("{shown}");
                    return Ok(());
                }
            };
            eprintln!("{shown}");
            let txn_hash = ciba_shared::transaction::txn_hash(&details["shown"]);
            decide(&api, &key, &device_id, &txn, decision, &txn_hash)?;
            println!("{} txn {txn}", decision.done());
            Ok(())
        }
        other => Err(Stop::Usage(format!("unknown command {other}\n\n{USAGE}"))),
    }
}

fn keygen(out: &str) -> Result<(), String> {
    let key = SigningKey::random(&mut OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    std::fs::write(out, pem.as_bytes()).map_err(|e| format!("{out}: {e}"))?;
    let (_, jwk) = public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
    eprintln!("wrote {out}; public key: {jwk}");
    Ok(())
}

fn enroll(
    api: &str,
    key: &SigningKey,
    code: &str,
    push_token: &str,
    platform: &str,
) -> Result<(), String> {
    let (_, jwk) = public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
    let body = json!({
        "enrollment_code": code,
        "public_key": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]},
        "push_token": push_token,
        "platform": platform,
    });
    let response = client::send(
        api,
        "POST",
        "/device/register",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )?;
    if response.status != 201 {
        return Err(format!(
            "enrolment refused: {} {}",
            response.status, response.body
        ));
    }
    println!(
        "{}",
        response.json()["device_id"].as_str().unwrap_or_default()
    );
    Ok(())
}

fn load_key(path: &str) -> Result<SigningKey, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{path}: {e}"))
}

fn pushes(api: &str, user: &str) -> Result<Value, String> {
    let target = format!("/_local/pushes?user={}", urlencode(user));
    let response = client::send(api, "GET", &target, &[], b"")?;
    if response.status != 200 {
        return Err(format!(
            "GET {target}: {} {}",
            response.status, response.body
        ));
    }
    Ok(response.json())
}

fn latest_txn(api: &str, user: &str, device_id: &str) -> Result<String, String> {
    let list = pushes(api, user)?;
    list.as_array()
        .and_then(|pushes| {
            pushes
                .iter()
                .rev()
                .find(|p| p["device_id"] == device_id)
                .and_then(|p| p["message"]["txn"].as_str())
        })
        .map(str::to_owned)
        .ok_or_else(|| format!("no push for {user} on device {device_id}"))
}

fn now() -> Result<u64, String> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs())
}

/// The device's signed call: an ES256 JWS of `claims` with a fresh `iat`, `exp` and `jti`.
fn signed(
    key: &SigningKey,
    device_id: &str,
    mut claims: Value,
    lifetime: u64,
) -> Result<String, String> {
    let now = now()?;
    claims["iat"] = now.into();
    claims["exp"] = (now + lifetime).into();
    claims["jti"] = OsRandom.token(16).into();
    Ok(jose::sign_with_key(
        key,
        &json!({"alg": "ES256", "typ": "JWT", "kid": device_id}),
        &claims,
    ))
}

/// What the request `txn` shows, from `POST /device/transaction`.
fn transaction(api: &str, key: &SigningKey, device_id: &str, txn: &str) -> Result<Value, String> {
    let jwt = signed(key, device_id, json!({"txn": txn}), 60)?;
    let response = client::send(
        api,
        "POST",
        "/device/transaction",
        &[("content-type", "application/jwt")],
        jwt.as_bytes(),
    )?;
    match response.status {
        200 => Ok(response.json()),
        status => Err(format!("transaction refused: {status} {}", response.body)),
    }
}

fn decide(
    api: &str,
    key: &SigningKey,
    device_id: &str,
    txn: &str,
    decision: Decision,
    txn_hash: &str,
) -> Result<(), String> {
    let jwt = signed(
        key,
        device_id,
        json!({"txn": txn, "action": decision.action(), "txn_hash": txn_hash}),
        120,
    )?;
    let response = client::send(
        api,
        "POST",
        "/device/decision",
        &[("content-type", "application/jwt")],
        jwt.as_bytes(),
    )?;
    match response.status {
        204 => Ok(()),
        status => Err(format!("decision refused: {status} {}", response.body)),
    }
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_reported_in_the_past_tense() {
        assert_eq!(Decision::Approve.done(), "approved");
        assert_eq!(Decision::Deny.done(), "denied");
    }

    #[test]
    fn help_before_or_after_the_command_is_the_usage() {
        for args in [&["--help"][..], &["-h"], &["deny", "--help"]] {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            assert_eq!(run(&args), Err(Stop::Help(USAGE.into())), "{args:?}");
        }
    }
}
