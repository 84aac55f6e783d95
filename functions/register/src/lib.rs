//! `POST /register`: dynamic client registration (RFC 7591) with the CIBA client metadata
//! (CIBA Core §4).
//!
//! check the initial access token → parse the JSON metadata → validate every field
//! (`registration::Metadata`) → check what the notification endpoint resolves to → mint the
//! client id (and secret) → store the client → 201 with what was registered, the secret once.

use ciba_shared::context::Ctx;
use ciba_shared::domain::{AuthMethod, Client, DeliveryMode, TlsClientMetadata};
use ciba_shared::error::{RegistrationError, error_response};
use ciba_shared::fapi;
use ciba_shared::http::{bearer_token, body_bytes, json_response, media_type};
use ciba_shared::registration::{Metadata, uses_secret};
use ciba_shared::secret::Secret;
use jsonwebtoken::jwk::JwkSet;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// Client ids carry 128 bits.
const CLIENT_ID_BYTES: usize = 16;
/// Client secrets carry 256 bits.
const CLIENT_SECRET_BYTES: usize = 32;
/// Far more than any sensible metadata (a handful of RSA keys is a few KiB); keeps the stored
/// client well under DynamoDB's item size limit.
const MAX_BODY: usize = 64 * 1024;

fn invalid_request(description: &'static str) -> RegistrationError {
    RegistrationError::InvalidRequest(description.into())
}

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match register(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn register(ctx: &Ctx, req: &Request) -> Result<Response<Body>, RegistrationError> {
    if req.method() != Method::POST {
        return Err(invalid_request(
            "the registration endpoint accepts POST only",
        ));
    }
    if !ctx.config.registration.admits(bearer_token(req.headers())) {
        return Err(RegistrationError::InvalidToken(
            "a valid initial access token is required".into(),
        ));
    }
    let body = parse(req)?;
    let local_op = ctx.config.runs_locally();
    let mut metadata = Metadata::validate(&body, local_op)?;
    // A resource server sees every client's access tokens at /introspect: the operator makes
    // them, never a caller of this endpoint.
    if metadata.resource_server {
        return Err(RegistrationError::InvalidClientMetadata(
            "resource servers are created by the operator (ciba-admin resource-server), not \
             registered here"
                .into(),
        ));
    }
    if fapi::applies_to_registration(&metadata, &ctx.config) {
        fapi::check_registration(&metadata)?;
        metadata.fapi = true;
    }
    metadata
        .check_endpoint_addresses(ctx.resolver.as_ref(), local_op)
        .await?;

    let client_id = ctx.random.token(CLIENT_ID_BYTES);
    let secret = uses_secret(metadata.token_endpoint_auth_method)
        .then(|| Secret::new(ctx.random.token(CLIENT_SECRET_BYTES)));
    let client = Client {
        client_id,
        client_name: metadata.client_name,
        client_secret_hash: secret.as_ref().map(Secret::hash),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method,
        jwks: metadata.jwks,
        backchannel_token_delivery_mode: metadata.delivery_mode,
        backchannel_client_notification_endpoint: metadata.notification_endpoint,
        backchannel_authentication_request_signing_alg: metadata.signing_alg,
        backchannel_user_code_parameter: metadata.user_code,
        resource_server: metadata.resource_server,
        access_token_format: metadata.access_token_format,
        fapi: metadata.fapi,
        authorization_details_types: metadata.authorization_details_types,
        tls: metadata.tls,
    };
    let issued_at = ctx.clock.now();
    ctx.store.clients().put_client(&client).await?;
    tracing::info!(
        client_id = %client.client_id,
        mode = ?client.backchannel_token_delivery_mode,
        auth_method = client.token_endpoint_auth_method.as_str(),
        "client registered"
    );
    let answer = Registered::new(&client, secret.as_ref(), &metadata.grant_types, issued_at);
    Ok(json_response(StatusCode::CREATED, &answer, true))
}

fn parse(req: &Request) -> Result<Map<String, Value>, RegistrationError> {
    if media_type(req.headers()).as_deref() != Some("application/json") {
        return Err(invalid_request(
            "the registration request must be application/json",
        ));
    }
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY {
        return Err(invalid_request("the registration request is too large"));
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        _ => Err(invalid_request(
            "the registration request must be a JSON object",
        )),
    }
}

/// The registration response (RFC 7591 §3.2.1): the client's credentials and its metadata as
/// registered.
#[derive(Serialize)]
struct Registered<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    client_id_issued_at: i64,
    /// 0: the secret never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret_expires_at: Option<i64>,
    token_endpoint_auth_method: AuthMethod,
    grant_types: &'a [String],
    /// None for a resource server, which starts no requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    backchannel_token_delivery_mode: Option<DeliveryMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backchannel_client_notification_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backchannel_authentication_request_signing_alg: Option<&'a str>,
    backchannel_user_code_parameter: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks: Option<&'a JwkSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resource_server: bool,
    access_token_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_details_types: Option<&'a [String]>,
    #[serde(flatten)]
    tls: &'a TlsClientMetadata,
}

impl<'a> Registered<'a> {
    fn new(
        client: &'a Client,
        secret: Option<&'a Secret>,
        grant_types: &'a [String],
        issued_at: i64,
    ) -> Self {
        Self {
            client_id: &client.client_id,
            client_secret: secret.map(Secret::expose),
            client_id_issued_at: issued_at,
            client_secret_expires_at: secret.map(|_| 0),
            token_endpoint_auth_method: client.token_endpoint_auth_method,
            grant_types,
            backchannel_token_delivery_mode: (!client.resource_server)
                .then_some(client.backchannel_token_delivery_mode),
            backchannel_client_notification_endpoint: client
                .backchannel_client_notification_endpoint
                .as_deref(),
            backchannel_authentication_request_signing_alg: client
                .backchannel_authentication_request_signing_alg
                .as_deref(),
            backchannel_user_code_parameter: client.backchannel_user_code_parameter,
            jwks: client.jwks.as_ref(),
            client_name: client.client_name.as_deref(),
            resource_server: client.resource_server,
            access_token_format: client.access_token_format.as_str(),
            authorization_details_types: client.authorization_details_types.as_deref(),
            tls: &client.tls,
        }
    }
}
