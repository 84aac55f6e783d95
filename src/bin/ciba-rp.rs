//! The relying party's signing, for walk-throughs with curl: what a FAPI client signs before it
//! calls the OP, from a demo key.
//!
//!   ciba-rp request-object --client-id ID --key KEY.pem --login-hint HINT --binding-message M
//!                          [--scope S] [--issuer URL]
//!   ciba-rp client-assertion --client-id ID --key KEY.pem [--audience URL] [--issuer URL]

use std::process::ExitCode;

use ciba_local::cli::{self, Stop};
use ciba_shared::jose;
use ciba_shared::ports::{OsRandom, Random};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;

const USAGE: &str = "\
ciba-rp: a relying party's signed requests (ES256), printed for curl

  ciba-rp request-object --client-id ID --key KEY.pem --login-hint HINT --binding-message M
                         [--scope \"openid email\"]
      a signed authentication request (CIBA Core §7.1.1) for POST /bc-authorize's `request`
  ciba-rp client-assertion --client-id ID --key KEY.pem [--audience URL]
      a private_key_jwt client assertion (RFC 7523), audience the issuer by default

  --issuer URL   the OP's issuer (CIBA_API, default http://127.0.0.1:8080)
";

/// How long what is signed here stays good: a walk-through's few steps.
const LIFETIME: i64 = 300;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(jws) => {
            println!("{jws}");
            ExitCode::SUCCESS
        }
        Err(stop) => stop.exit("ciba-rp"),
    }
}

fn run(args: &[String]) -> Result<String, Stop> {
    let (command, rest) = cli::command(args, USAGE)?;
    let flags = cli::flags(rest, USAGE)?;
    let issuer = flags.get("issuer").cloned().unwrap_or_else(|| {
        std::env::var("CIBA_API").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
    });
    let client_id = flags.required("client-id")?;
    let key = read_key(&flags.required("key")?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let jti = OsRandom.token(16);
    match command {
        "request-object" => {
            let claims = json!({
                "iss": client_id, "aud": issuer, "iat": now, "nbf": now, "exp": now + LIFETIME,
                "jti": jti,
                "scope": flags.get("scope").map_or("openid", String::as_str),
                "login_hint": flags.required("login-hint")?,
                "binding_message": flags.required("binding-message")?,
            });
            let header = json!({"alg": "ES256", "typ": "oauth-authz-req+jwt"});
            Ok(jose::sign_with_key(&key, &header, &claims))
        }
        "client-assertion" => {
            let audience = flags.get("audience").cloned().unwrap_or(issuer);
            let claims = json!({
                "iss": client_id, "sub": client_id, "aud": audience,
                "iat": now, "exp": now + LIFETIME, "jti": jti,
            });
            Ok(jose::sign_with_key(
                &key,
                &json!({"alg": "ES256", "typ": "JWT"}),
                &claims,
            ))
        }
        other => Err(Stop::Usage(format!("unknown command {other}\n\n{USAGE}"))),
    }
}

fn read_key(path: &str) -> Result<SigningKey, Stop> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Stop::Usage(format!("cannot read --key {path}: {e}")))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|_| Stop::Usage(format!("--key {path} is not a PKCS#8 PEM P-256 key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    const KEY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/pki/demo-mtls-rp.pem"
    );

    #[test]
    fn a_request_object_carries_the_walk_throughs_parameters_for_the_issuer() {
        let jws = run(&args(&[
            "request-object",
            "--client-id",
            "demo-mtls",
            "--key",
            KEY,
            "--login-hint",
            "alice",
            "--binding-message",
            "W4SCT",
            "--issuer",
            "https://127.0.0.1:8443",
        ]))
        .unwrap();
        let key = read_key(KEY).unwrap();
        let (_, jwk) =
            ciba_shared::ports::public_jwk_with_kid(&p256::PublicKey::from(key.verifying_key()));
        let keys: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(json!({ "keys": [jwk] })).unwrap();
        let verified = jose::verify(&jws, &keys, &[jsonwebtoken::Algorithm::ES256]).unwrap();
        assert_eq!(verified.claims["aud"], "https://127.0.0.1:8443");
        assert_eq!(verified.claims["binding_message"], "W4SCT");
        assert_eq!(verified.claims["iss"], "demo-mtls");
    }

    #[test]
    fn a_missing_flag_or_key_is_a_usage_error() {
        for bad in [
            args(&["request-object", "--client-id", "x", "--key", KEY]),
            args(&[
                "client-assertion",
                "--client-id",
                "x",
                "--key",
                "/nonexistent.pem",
            ]),
            args(&["sign", "--client-id", "x", "--key", KEY]),
        ] {
            assert!(matches!(run(&bad), Err(Stop::Usage(_))), "{bad:?}");
        }
    }
}
