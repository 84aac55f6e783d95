//! Setting the table up and test scaffolding: creating the table with its stream and TTL (for
//! the operator tooling and the tests), a client for DynamoDB Local, and a fresh table per test.

use std::time::Duration;

use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};

use super::transact::build_error;
use crate::store::StoreError;

/// Why [`create_table`] failed. A failed call keeps the SDK's error whole, so a command-line
/// caller can tell an unreachable endpoint or missing credentials from a refusal and say so in
/// one line instead of printing the error's debug dump.
#[derive(Debug)]
pub enum TableSetupError {
    /// The named DynamoDB call failed (boxed: an SDK error holds the whole HTTP response).
    Call(
        &'static str,
        Box<SdkError<aws_sdk_dynamodb::Error, aws_sdk_dynamodb::config::http::HttpResponse>>,
    ),
    /// A request could not be built, or the table did not become active in time.
    Store(StoreError),
}

impl TableSetupError {
    fn call<E: Into<aws_sdk_dynamodb::Error>>(
        op: &'static str,
        err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self {
        Self::Call(op, Box::new(err.map_service_error(Into::into)))
    }
}

impl std::fmt::Display for TableSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call(op, err) => write!(f, "{op}: {}", DisplayErrorContext(err.as_ref())),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TableSetupError {}

impl From<StoreError> for TableSetupError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Creates the table (`pk` HASH S, `sk` RANGE S, on demand, stream `NEW_AND_OLD_IMAGES`), waits
/// until it is active and enables TTL on `ttl`. An existing table is fine.
pub async fn create_table(client: &DynamoClient, table: &str) -> Result<(), TableSetupError> {
    let key_attribute = |name: &str, key_type: KeyType| -> Result<_, StoreError> {
        Ok((
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)?,
        ))
    };
    let (pk_def, pk_key) = key_attribute("pk", KeyType::Hash)?;
    let (sk_def, sk_key) = key_attribute("sk", KeyType::Range)?;
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(pk_def)
        .attribute_definitions(sk_def)
        .key_schema(pk_key)
        .key_schema(sk_key)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(stream)
        .send()
        .await;
    if let Err(err) = created
        && err.code() != Some("ResourceInUseException")
    {
        return Err(TableSetupError::call("create_table", err));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| TableSetupError::call("describe_table", e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "table {table} not active after 300 s ({status:?})"
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    enable_ttl(client, table).await
}

async fn enable_ttl(client: &DynamoClient, table: &str) -> Result<(), TableSetupError> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name("ttl")
        .build()
        .map_err(build_error)?;
    let Err(err) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    else {
        return Ok(());
    };
    // Enabling TTL twice is an error ("TimeToLive is already enabled"): fine if it is on `ttl`.
    if let Ok(described) = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
    {
        let ttl = described.time_to_live_description();
        let on = ttl.is_some_and(|d| {
            d.attribute_name() == Some("ttl")
                && matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if on {
            return Ok(());
        }
    }
    // DynamoDB Local never deletes expired items and some versions reject the call: the code
    // checks expiry itself, so a table without TTL only keeps garbage longer.
    if is_dynamodb_local(&err) {
        tracing::warn!(
            table,
            error = %DisplayErrorContext(&err),
            "UpdateTimeToLive failed on DynamoDB Local; continuing without TTL"
        );
        return Ok(());
    }
    Err(TableSetupError::call("update_time_to_live", err))
}

/// DynamoDB Local is a Jetty server (`Server: Jetty(...)`); AWS answers `Server: Server`.
fn is_dynamodb_local<E>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::ServiceError(e) => e
            .raw()
            .headers()
            .get("server")
            .is_some_and(|server| server.starts_with("Jetty")),
        _ => false,
    }
}

/// A DynamoDB client for DynamoDB Local (or any emulator) at `endpoint`, with region `us-east-1`
/// and static dummy credentials.
pub async fn local_client(endpoint: &str) -> DynamoClient {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "static",
        ))
        .load()
        .await;
    DynamoClient::new(&config)
}
