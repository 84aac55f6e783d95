//! The DynamoDB table of the command-line tools (`ciba-local --store dynamodb`, `ciba-admin`):
//! opened with the AWS SDK's usual configuration, created when missing, and every way that can
//! fail told in one line that says what to do. The SDK's own errors print as a debug dump of
//! several kilobytes, which hides the one fact that matters.

use std::error::Error;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use ciba_shared::store::DynamoStore;
use ciba_shared::store::dynamodb::{self, TableSetupError};

/// An open table, and whether opening it created it.
pub struct Table {
    pub store: DynamoStore,
    pub created: bool,
}

/// Opens `table`, creating it as the stack would (see `dynamodb::create_table`) when it does
/// not exist. The error is one line for the user.
pub async fn open(table: &str) -> Result<Table, String> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let at = endpoint(&aws, &|name| std::env::var(name).ok());
    check_config(&aws).await?;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let created = match client.describe_table().table_name(table).send().await {
        Ok(_) => false,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(DescribeTableError::is_resource_not_found_exception) =>
        {
            dynamodb::create_table(&client, table)
                .await
                .map_err(|e| cannot_create(table, &e, &at))?;
            true
        }
        Err(err) => {
            return Err(explain(
                &format!("describe_table of {table}"),
                &err.map_service_error(Into::into),
                &at,
            ));
        }
    };
    Ok(Table {
        store: DynamoStore::new(client, table),
        created,
    })
}

/// Where requests go, for messages. The SDK resolves the endpoint per request and offers no
/// getter, so this reads the same settings: the service's endpoint variable, the global one
/// (in `aws`), else AWS's regional endpoint.
fn endpoint(aws: &SdkConfig, env: &dyn Fn(&str) -> Option<String>) -> String {
    match env("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| aws.endpoint_url().map(str::to_owned)) {
        Some(url) => format!("DynamoDB at {url}"),
        None => match aws.region() {
            Some(region) => format!("DynamoDB in {region}"),
            None => "DynamoDB".into(),
        },
    }
}

/// A region and credentials, checked before the first call: without them the SDK fails the call
/// before sending it, with an error that cannot be told from other failures to send.
async fn check_config(aws: &SdkConfig) -> Result<(), String> {
    if aws.region().is_none() {
        return Err(
            "no AWS region: set AWS_REGION (any region, e.g. us-east-1, for DynamoDB Local)".into(),
        );
    }
    let Some(provider) = aws.credentials_provider() else {
        return Err(no_credentials(None));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(no_credentials(Some(&e))),
    }
}

fn no_credentials(cause: Option<&dyn Error>) -> String {
    let cause = cause.map(|e| format!(" ({e})")).unwrap_or_default();
    format!(
        "no AWS credentials found{cause}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (any value for DynamoDB Local) or configure a profile"
    )
}

fn cannot_create(table: &str, err: &TableSetupError, at: &str) -> String {
    let why = match err {
        TableSetupError::Call(op, err) => explain(op, err, at),
        TableSetupError::Store(e) => e.to_string(),
    };
    let refused =
        matches!(err, TableSetupError::Call(_, e) if matches!(**e, SdkError::ServiceError(_)));
    let what_to_do = if refused {
        "; create it (sam deploy creates the stack's table) or use credentials allowed \
         dynamodb:CreateTable"
    } else {
        ""
    };
    format!("table {table} does not exist and cannot be created: {why}{what_to_do}")
}

/// One line for a failed DynamoDB call `op` to `at`, by the kind of failure.
fn explain(op: &str, err: &SdkError<aws_sdk_dynamodb::Error, HttpResponse>, at: &str) -> String {
    let unreachable = match err {
        SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
        SdkError::TimeoutError(_) => true,
        _ => false,
    };
    if unreachable {
        let what_to_do = if at.starts_with("DynamoDB at ") {
            "start DynamoDB Local (bash tests/emulators.sh dynamodb) or set \
             AWS_ENDPOINT_URL_DYNAMODB"
        } else {
            "check the network; for DynamoDB Local start it (bash tests/emulators.sh dynamodb) \
             and set AWS_ENDPOINT_URL_DYNAMODB"
        };
        return format!("cannot reach {at}: {}; {what_to_do}", root_cause(err));
    }
    let not_dynamodb = |status: u16| {
        format!(
            "{at} answered {op} with HTTP {status} and no DynamoDB error; check that \
             AWS_ENDPOINT_URL_DYNAMODB points at DynamoDB"
        )
    };
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) => format!(
                "{at} refused {op}: {code}: {}",
                service.err().message().unwrap_or("no message")
            ),
            None => not_dynamodb(service.raw().status().as_u16()),
        },
        SdkError::ResponseError(response) => not_dynamodb(response.raw().status().as_u16()),
        _ => format!("{op} could not be sent to {at}: {}", root_cause(err)),
    }
}

/// The innermost error of `err`'s chain (the operating system's "Connection refused", say): the
/// outer ones only name the layers it passed through.
fn root_cause(err: &(dyn Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;
    use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_dynamodb::operation::create_table::CreateTableError;

    const LOCAL: &str = "DynamoDB at http://127.0.0.1:8000";

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), "".into())
    }

    #[test]
    fn an_endpoint_that_is_not_dynamodb_is_named_with_its_http_status() {
        let unknown = CreateTableError::generic(ErrorMetadata::builder().build());
        let err = SdkError::service_error(aws_sdk_dynamodb::Error::from(unknown), response(501));
        let message = explain("describe_table of t", &err, LOCAL);
        assert!(
            message.starts_with(
                "DynamoDB at http://127.0.0.1:8000 answered describe_table of t with HTTP 501"
            ),
            "{message}"
        );
        assert!(message.contains("AWS_ENDPOINT_URL_DYNAMODB"), "{message}");
    }

    fn one_line(message: &str) {
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.len() < 400,
            "{} characters: {message}",
            message.len()
        );
    }

    #[test]
    fn a_refused_connection_says_to_start_dynamodb_local() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = SdkError::<aws_sdk_dynamodb::Error, HttpResponse>::dispatch_failure(
            ConnectorError::io(Box::new(refused)),
        );
        let message = explain("describe_table t", &err, LOCAL);
        one_line(&message);
        assert!(
            message
                .starts_with("cannot reach DynamoDB at http://127.0.0.1:8000: connection refused;"),
            "{message}"
        );
        assert!(
            message.contains("bash tests/emulators.sh dynamodb"),
            "{message}"
        );
    }

    #[test]
    fn a_connect_timeout_is_unreachable_too() {
        let err = SdkError::<aws_sdk_dynamodb::Error, HttpResponse>::dispatch_failure(
            ConnectorError::timeout("HTTP connect timeout occurred after 3.1s".into()),
        );
        let message = explain("describe_table t", &err, "DynamoDB in eu-west-1");
        one_line(&message);
        assert!(
            message.starts_with("cannot reach DynamoDB in eu-west-1: HTTP connect timeout"),
            "{message}"
        );
        assert!(message.contains("check the network"), "{message}");
    }

    #[test]
    fn a_refusal_gives_the_service_code_and_message_only() {
        let denied = CreateTableError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform dynamodb:CreateTable")
                .build(),
        );
        let err = SdkError::service_error(aws_sdk_dynamodb::Error::from(denied), response(400));
        let message = explain("create_table", &err, LOCAL);
        assert_eq!(
            message,
            "DynamoDB at http://127.0.0.1:8000 refused create_table: AccessDeniedException: \
             not authorized to perform dynamodb:CreateTable"
        );
    }

    #[test]
    fn a_table_that_cannot_be_created_says_how_to_get_one() {
        let denied = CreateTableError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("no")
                .build(),
        );
        let err = TableSetupError::Call(
            "create_table",
            Box::new(SdkError::service_error(
                aws_sdk_dynamodb::Error::from(denied),
                response(400),
            )),
        );
        let message = cannot_create("ciba", &err, LOCAL);
        one_line(&message);
        assert!(
            message.starts_with("table ciba does not exist and cannot be created: "),
            "{message}"
        );
        assert!(message.ends_with("dynamodb:CreateTable"), "{message}");
    }

    #[test]
    fn the_endpoint_named_is_the_dynamodb_override_else_the_region() {
        let aws = SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:9999")
            .build();
        let dynamodb_local = |name: &str| {
            (name == "AWS_ENDPOINT_URL_DYNAMODB").then(|| "http://127.0.0.1:8000".to_owned())
        };
        assert_eq!(endpoint(&aws, &dynamodb_local), LOCAL);
        assert_eq!(
            endpoint(&aws, &|_| None),
            "DynamoDB at http://127.0.0.1:9999"
        );
        let aws = SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .build();
        assert_eq!(endpoint(&aws, &|_| None), "DynamoDB in eu-west-1");
    }

    #[tokio::test]
    async fn no_region_says_to_set_aws_region() {
        let message = check_config(&SdkConfig::builder().build())
            .await
            .unwrap_err();
        assert!(
            message.starts_with("no AWS region: set AWS_REGION"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn no_credentials_says_which_variables_to_set() {
        let aws = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .build();
        let message = check_config(&aws).await.unwrap_err();
        one_line(&message);
        assert!(message.starts_with("no AWS credentials found"), "{message}");
        assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
        let aws = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "x", "x", None, None, "test",
            )))
            .build();
        assert_eq!(check_config(&aws).await, Ok(()));
    }
}
