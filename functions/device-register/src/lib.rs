//! `POST /device/register`: enrols an authentication device (authenticator app) for the user an
//! operator issued a one-time enrolment code to.
//!
//! parse → validate the key and platform → check the code → create (or find) the SNS platform
//! endpoint → consume the code and store the device in one atomic write → 201 `{device_id}`.

use ciba_shared::context::Ctx;
use ciba_shared::domain::Device;
use ciba_shared::error::{DeviceError, Internal, error_response};
use ciba_shared::http::{body_bytes, json_response, media_type};
use ciba_shared::jose;
use ciba_shared::push::{Platform, PushError};
use ciba_shared::secret;
use ciba_shared::store::EnrollError;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// Device ids carry 128 bits.
const DEVICE_ID_BYTES: usize = 16;
/// FCM registration tokens run to a few hundred characters, APNs tokens to 200 hex digits.
const MAX_PUSH_TOKEN: usize = 4096;

fn invalid(description: impl Into<String>) -> DeviceError {
    DeviceError::InvalidRequest(description.into().into())
}

pub async fn handle(ctx: &Ctx, req: Request) -> Response<Body> {
    match register(ctx, &req).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

struct Registration {
    code: String,
    public_key: Value,
    push_token: String,
    platform: Platform,
}

fn parse(req: &Request) -> Result<Registration, DeviceError> {
    if media_type(req.headers()).as_deref() != Some("application/json") {
        return Err(invalid("the body must be application/json"));
    }
    let body: Value =
        serde_json::from_slice(body_bytes(req)).map_err(|_| invalid("the body is not JSON"))?;
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("{name} is required")))
    };
    let code = text("enrollment_code")?.to_owned();
    let push_token = text("push_token")?;
    if push_token.len() > MAX_PUSH_TOKEN || push_token.chars().any(char::is_control) {
        return Err(invalid("push_token is malformed"));
    }
    let platform = Platform::parse(text("platform")?)
        .ok_or_else(|| invalid("platform must be GCM, APNS or APNS_SANDBOX"))?;
    let public_key = body
        .get("public_key")
        .ok_or_else(|| invalid("public_key is required"))
        .and_then(|jwk| jose::p256_public_jwk(jwk).map_err(invalid))?;
    Ok(Registration {
        code,
        public_key,
        push_token: push_token.to_owned(),
        platform,
    })
}

async fn register(ctx: &Ctx, req: &Request) -> Result<Response<Body>, DeviceError> {
    if req.method() != Method::POST {
        return Err(invalid(
            "the device registration endpoint accepts POST only",
        ));
    }
    let registration = parse(req)?;
    let now = ctx.clock.now();
    let code_hash = secret::hash(&registration.code);
    let spent =
        || DeviceError::InvalidGrant("the enrollment code is unknown, used or expired".into());
    let code = ctx
        .store
        .accounts()
        .get_enrollment_code(&code_hash, now)
        .await?
        .ok_or_else(spent)?;

    // Enrolling the same push token again updates that device rather than adding another.
    let platform = registration.platform.as_str();
    let existing = ctx
        .store
        .accounts()
        .list_devices(&code.sub)
        .await?
        .into_iter()
        .find(|d| {
            d.push_token.as_deref() == Some(registration.push_token.as_str())
                && d.platform.as_deref() == Some(platform)
        });
    let device_id = existing
        .map(|d| d.device_id)
        .unwrap_or_else(|| ctx.random.token(DEVICE_ID_BYTES));

    let endpoint_arn = ctx
        .push
        .register(registration.platform, &registration.push_token)
        .await
        .map_err(|e| match e {
            PushError::PlatformNotConfigured => {
                invalid(format!("platform {platform} is not configured on this OP"))
            }
            PushError::Rejected(_) => invalid("the push service refused the push_token"),
            e @ (PushError::Unavailable(_) | PushError::EndpointDisabled) => {
                DeviceError::Internal(Internal::log(&e, true))
            }
        })?;
    let device = Device {
        device_id,
        sub: code.sub,
        public_key: registration.public_key,
        platform: Some(platform.to_owned()),
        push_token: Some(registration.push_token),
        endpoint_arn: Some(endpoint_arn),
        enabled: true,
    };
    ctx.store
        .accounts()
        .enroll_device(&code_hash, &device, now)
        .await
        .map_err(|e| match e {
            EnrollError::InvalidCode => spent(),
            EnrollError::Store(e) => e.into(),
        })?;
    tracing::info!(device_id = %device.device_id, platform, "device enrolled");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"device_id": device.device_id}),
        true,
    ))
}
