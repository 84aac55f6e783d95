//! The AWS emulators `tests/run` starts: where they listen, and SDK configuration for them.

use aws_config::{BehaviorVersion, SdkConfig};

/// The endpoint in `variable`; `None` (the test skips) when unset, unless `CIBA_REQUIRE_<service>`
/// is `1`, as inside `tests/run`, where a missing emulator fails the test.
pub fn endpoint(service: &str) -> Option<String> {
    let variable = format!("CIBA_{service}_ENDPOINT");
    let required = format!("CIBA_REQUIRE_{service}");
    match std::env::var(&variable) {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(endpoint.trim().to_owned()),
        _ => {
            if std::env::var(&required).is_ok_and(|v| v == "1") {
                panic!(
                    "{required}=1 but {variable} is not set: start the emulator \
                     (tests/run does) and set it, e.g. http://127.0.0.1:5000"
                );
            }
            eprintln!("skipping: {variable} not set");
            None
        }
    }
}

/// SDK configuration for an emulator at `endpoint`: us-east-1, static dummy credentials.
pub async fn config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "local", "local", None, None, "static",
        ))
        .load()
        .await
}
