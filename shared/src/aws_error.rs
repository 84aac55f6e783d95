//! What every AWS adapter (DynamoDB, SNS, KMS) needs to know of a failed SDK call: whether trying
//! again may help, and the error with its sources as one line of text.
//!
//! Codes that mean something to one service only stay in its adapter: the adapter passes its own
//! retryable codes in (DynamoDB's `ProvisionedThroughputExceededException`, KMS's
//! `KeyUnavailableException`) and handles its other codes itself (DynamoDB's conditional check
//! failures, SNS's disabled endpoints).

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Throttling and server-side error codes that AWS services share.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "Throttled",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// The raw response of a failed call, as far as `is_transient` reads it.
pub trait RawResponse {
    fn is_server_error(&self) -> bool;
}

impl<B> RawResponse for Response<B> {
    fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }
}

/// Whether a failed call may succeed when tried again: a timeout, a connection failure, a
/// response that could not be read, or a service error that is throttling or server-side (a 5xx
/// status, a code AWS services share, or one of the adapter's `service_codes`). Everything else
/// (a refusal, a request that could not be built) fails the same way again.
pub fn is_transient<E, R>(err: &SdkError<E, R>, service_codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
    R: RawResponse,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let code = e.err().code();
            code.is_some_and(|c| TRANSIENT_CODES.contains(&c) || service_codes.contains(&c))
                || e.raw().is_server_error()
        }
        _ => false,
    }
}

/// An error and its sources, `: `-separated (`Display` only, no `Debug` dumps); a source whose
/// text its error already ends with is not repeated.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use aws_sdk_kms::operation::sign::SignError;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type Error = SdkError<SignError, Response>;

    fn service_error(status: u16, code: &str) -> Error {
        let raw = lambda_http::http::Response::builder()
            .status(status)
            .body(String::new().into())
            .unwrap();
        SdkError::service_error(
            SignError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            Response::try_from(raw).unwrap(),
        )
    }

    #[test]
    fn timeouts_and_connection_failures_are_transient() {
        let timeout: Error = SdkError::timeout_error("too slow");
        assert!(is_transient(&timeout, &[]));
        let dispatch: Error = SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::io("refused".into()),
        );
        assert!(is_transient(&dispatch, &[]));
    }

    #[test]
    fn shared_throttling_codes_and_server_errors_are_transient() {
        for (status, code) in [
            (400, "ThrottlingException"),
            (400, "Throttled"),
            (400, "TooManyRequestsException"),
            (500, "SomethingNew"),
            (503, "Whatever"),
        ] {
            assert!(
                is_transient(&service_error(status, code), &[]),
                "{status} {code}"
            );
        }
    }

    #[test]
    fn adapter_codes_are_transient_only_where_passed() {
        let err = service_error(400, "ProvisionedThroughputExceededException");
        assert!(!is_transient(&err, &[]));
        assert!(is_transient(
            &err,
            &["ProvisionedThroughputExceededException"]
        ));
    }

    #[test]
    fn client_errors_and_construction_failures_are_not_transient() {
        assert!(!is_transient(
            &service_error(400, "AccessDeniedException"),
            &[]
        ));
        let unbuilt: Error = SdkError::construction_failure("no region");
        assert!(!is_transient(&unbuilt, &[]));
    }

    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn chain_joins_an_error_and_its_sources() {
        let err = Wrapped(
            "dispatch failure",
            std::io::Error::other("connection refused"),
        );
        assert_eq!(chain(&err), "dispatch failure: connection refused");
    }

    #[test]
    fn chain_does_not_repeat_a_source_the_error_already_ends_with() {
        let err = Wrapped(
            "io error: connection refused",
            std::io::Error::other("connection refused"),
        );
        assert_eq!(chain(&err), "io error: connection refused");
    }
}
