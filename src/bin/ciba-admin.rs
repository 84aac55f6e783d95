//! Operator tooling: imports the seed format into the configured store and issues one-time
//! enrolment codes.
//!
//!   ciba-admin import --seed FILE [--table NAME]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] [--table NAME]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] --api http://127.0.0.1:8080
//!
//! Without `--api` it writes to DynamoDB (`--table` or `TABLE_NAME`), configured as the AWS SDK
//! is (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local). With `--api`
//! it asks a running local API, whose in-memory store no other process can reach.

use std::collections::HashMap;
use std::process::ExitCode;

use ciba_local::client;
use ciba_shared::enrollment;
use ciba_shared::ports::{Clock, OsRandom, SystemClock};
use ciba_shared::seed::Seed;
use ciba_shared::store::DynamoStore;

const USAGE: &str = "usage: ciba-admin import --seed FILE [--table NAME]
       ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] [--table NAME | --api URL]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ciba-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn dynamo(flags: &HashMap<String, String>) -> Result<DynamoStore, String> {
    let table = flags
        .get("table")
        .cloned()
        .or_else(|| std::env::var("TABLE_NAME").ok())
        .ok_or("--table or TABLE_NAME is required")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table))
}

async fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    let flags = ciba_local::cli::flags(rest, USAGE)?;
    let flag = |name: &str| {
        flags
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
    };
    let now = SystemClock.now();
    match command.as_str() {
        "import" => {
            let path = flag("seed")?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            let seed = Seed::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
            let store = dynamo(&flags).await?;
            seed.import(&store, now).await.map_err(|e| e.to_string())?;
            println!(
                "imported {} clients, {} users, {} devices, {} enrollment codes into {}",
                seed.clients.len(),
                seed.users.len(),
                seed.devices.len(),
                seed.enrollment_codes.len(),
                store.table()
            );
            Ok(())
        }
        "enrollment-code" => {
            let user = flag("user")?;
            let ttl: i64 = match flags.get("ttl") {
                Some(t) => t
                    .parse()
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or("--ttl must be a positive integer")?,
                None => 600,
            };
            if let Some(api) = flags.get("api") {
                let body = serde_json::json!({"user": user, "ttl": ttl}).to_string();
                let response = client::send(
                    api,
                    "POST",
                    "/_local/enrollment-codes",
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                )?;
                if response.status != 201 {
                    return Err(format!("{} {}", response.status, response.body));
                }
                println!(
                    "{}",
                    response.json()["enrollment_code"]
                        .as_str()
                        .unwrap_or_default()
                );
                return Ok(());
            }
            let store = dynamo(&flags).await?;
            let (code, record) = enrollment::issue(&store, &OsRandom, &user, None, ttl, now)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "enrollment code for {} valid until {} (epoch seconds):",
                record.sub, record.expires_at
            );
            println!("{}", code.expose());
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}
