//! The rules of the backchannel authentication endpoint (CIBA Core §7), in the order the
//! endpoint applies them once the client is authenticated: the parameters (from the form or a
//! signed request object) → their validation → the user they name → the user's devices → the
//! stored request → the push to the devices.

pub mod hints;
pub mod params;
pub mod request_object;

pub use hints::{check_user_code, resolve_user};
pub use params::{AUTHN_PARAMS, AuthnParams, Hint, ValidParams, validate};

use crate::client_auth::CLIENT_AUTH_PARAMS;
use crate::context::Ctx;
use crate::domain::{AuthRequest, Client, DeliveryMode, Device, Status, User};
use crate::error::{AuthnError, Internal};
use crate::fapi;
use crate::http::Form;
use crate::push::{PushError, PushMessage};
use crate::store::{Attempt, CreateError, Crowded, JtiUse, StoreError};

/// `txn` carries 128 random bits, `auth_req_id` the txn and 192 more (CIBA Core §7.3 asks for at
/// least 128).
const AUTH_REQ_ID_BYTES: usize = 24;
const TXN_BYTES: usize = 16;

fn invalid(description: &'static str) -> AuthnError {
    AuthnError::InvalidRequest(description.into())
}

/// Accepts the backchannel authentication request of the authenticated `client`: answers the
/// stored request once at least one of the user's devices was notified.
pub async fn accept(
    ctx: &Ctx,
    client: &Client,
    form: &Form,
    now: i64,
) -> Result<AuthRequest, AuthnError> {
    if client.resource_server {
        return Err(AuthnError::UnauthorizedClient(
            "a resource server may introspect tokens but not start authentication requests".into(),
        ));
    }
    let fapi = fapi::applies(client, &ctx.config);
    if fapi && client.backchannel_token_delivery_mode == DeliveryMode::Push {
        return Err(AuthnError::UnauthorizedClient(
            "FAPI-CIBA does not allow push mode".into(),
        ));
    }
    let (params, jti) = parameters(ctx, form, client, now)?;
    let valid = validate(params, client, &ctx.config)?;
    if fapi && valid.binding_message.is_none() {
        return Err(AuthnError::InvalidBindingMessage(
            "a FAPI client must send a binding_message".into(),
        ));
    }
    let user = resolve_user(
        &valid.hint,
        client,
        ctx.store.as_ref(),
        ctx.signer.as_ref(),
        &ctx.config,
        now,
    )
    .await?;
    user_code(ctx, client, &user, valid.user_code.as_deref(), now).await?;
    let devices = usable_devices(ctx, &user).await?;

    let request = new_request(ctx, client, &user, valid, now);
    store_request(ctx, &request, jti.as_ref()).await?;
    push(ctx, client, &request, jti.as_ref(), devices).await?;
    Ok(request)
}

/// The authentication parameters: from the request object when there is one (then nothing but
/// client authentication may stand beside it), else from the form.
fn parameters(
    ctx: &Ctx,
    form: &Form,
    client: &Client,
    now: i64,
) -> Result<(AuthnParams, Option<JtiUse>), AuthnError> {
    match form.get("request") {
        Some(jwt) => {
            let outside = form
                .names()
                .any(|n| AUTHN_PARAMS.contains(&n) && !CLIENT_AUTH_PARAMS.contains(&n));
            if outside {
                return Err(invalid(
                    "with a request object, authentication parameters must be inside it",
                ));
            }
            let (params, jti) = request_object::verify(jwt, client, &ctx.config, now)?;
            Ok((params, Some(jti)))
        }
        None if client
            .backchannel_authentication_request_signing_alg
            .is_some()
            || fapi::applies(client, &ctx.config) =>
        {
            Err(invalid("this client must send a signed request object"))
        }
        None => Ok((AuthnParams::from_form(form), None)),
    }
}

/// The user's `user_code`, when the client requires one, checked only while this client has
/// attempts left for the user (`Config::user_code_attempts`): each check is counted first, so
/// racing guesses cannot outrun the count, and a right code clears it. A client locked out for a
/// user has its requests for that user refused before any push, right code or not; another
/// client's are not affected.
async fn user_code(
    ctx: &Ctx,
    client: &Client,
    user: &User,
    code: Option<&str>,
    now: i64,
) -> Result<(), AuthnError> {
    if !client.backchannel_user_code_parameter {
        return Ok(());
    }
    let accounts = ctx.store.accounts();
    let limit = ctx.config.user_code_attempts;
    if let Attempt::Locked { until } = accounts
        .begin_user_code_attempt(&client.client_id, &user.sub, now, limit)
        .await?
    {
        return Err(AuthnError::AccessDenied(
            format!(
                "too many wrong user_code attempts for this user: refused for {} more seconds",
                until - now
            )
            .into(),
        ));
    }
    check_user_code(client, user, code, ctx.keys.as_deref())?;
    accounts
        .clear_user_code_attempts(&client.client_id, &user.sub)
        .await?;
    Ok(())
}

/// Stores the new request with its request object's `jti`, unless its user already has as many
/// pending requests as `Config::pending_limit` allows (then nothing is stored or pushed). A store
/// that was unavailable may have committed the write all the same (its answers lost): the request
/// is taken back, so none stays behind that its client never heard of. Its `jti` stays spent: whether this write or an
/// earlier use of the request object spent it is unknown, and a replay must stay refused.
async fn store_request(
    ctx: &Ctx,
    request: &AuthRequest,
    jti: Option<&JtiUse>,
) -> Result<(), AuthnError> {
    let limit = ctx.config.pending_limit;
    match ctx
        .store
        .requests()
        .create_auth_request(request, jti, limit)
        .await
    {
        Ok(()) => Ok(()),
        Err(CreateError::JtiReplayed) => Err(invalid("the request object's jti was already used")),
        Err(CreateError::TooManyPending(crowded)) => {
            let (count, whose) = match crowded {
                Crowded::ByClient => (limit.per_client, "from this client"),
                Crowded::ByUser => (limit.per_user, "in all"),
            };
            Err(AuthnError::AccessDenied(
                format!(
                    "the user already has {count} pending requests {whose}, the most allowed: \
                     wait until one is decided or expires"
                )
                .into(),
            ))
        }
        Err(CreateError::Store(e @ StoreError::Unavailable(_))) => {
            let unavailable = e.into();
            if let Err(e) = ctx
                .store
                .requests()
                .discard_auth_request(request, None)
                .await
            {
                tracing::warn!(error = %e, "could not take back a request whose creation may have committed");
            }
            Err(unavailable)
        }
        Err(CreateError::Store(e)) => Err(e.into()),
    }
}

/// The user's enrolled devices that can still receive a push. A user with none cannot approve
/// anything, so the request is refused as for an unknown user (CIBA Core §13 `unknown_user_id`).
async fn usable_devices(ctx: &Ctx, user: &User) -> Result<Vec<Device>, AuthnError> {
    let devices: Vec<Device> = ctx
        .store
        .accounts()
        .list_devices(&user.sub)
        .await?
        .into_iter()
        .filter(|d| d.enabled)
        .collect();
    if devices.is_empty() {
        return Err(AuthnError::UnknownUserId(
            "the user has no enrolled authentication device".into(),
        ));
    }
    Ok(devices)
}

fn new_request(
    ctx: &Ctx,
    client: &Client,
    user: &User,
    valid: ValidParams,
    now: i64,
) -> AuthRequest {
    // The id starts with the txn, so the store keeps one item that both find; the device, which
    // knows only the txn, cannot make up the rest.
    let txn = ctx.random.token(TXN_BYTES);
    AuthRequest {
        auth_req_id: format!("{txn}.{}", ctx.random.token(AUTH_REQ_ID_BYTES)),
        txn,
        client_id: client.client_id.clone(),
        client_name: Some(client.display_name().to_owned()),
        sub: user.sub.clone(),
        scope: valid.scope,
        acr_values: valid.acr_values,
        binding_message: valid.binding_message,
        client_notification_token: valid.client_notification_token,
        delivery_mode: client.backchannel_token_delivery_mode,
        created_at: now,
        expires_at: now + valid.expires_in,
        interval: ctx.config.interval,
        last_poll_ms: None,
        status: Status::Pending,
        decided_at: None,
        notified_at: None,
        authorization_details: valid.authorization_details,
        evidence: None,
    }
}

/// Pushes the request to every usable device of the user. A disabled endpoint's device is marked
/// (unless it was enrolled again since it was read) and skipped. When no push reached any device
/// the request is discarded (so nothing lingers that can never be approved, and the same request
/// object may be sent again): an outage of the push service answers 503
/// `temporarily_unavailable`, a user whose every device is gone answers `unknown_user_id`.
async fn push(
    ctx: &Ctx,
    client: &Client,
    request: &AuthRequest,
    jti: Option<&JtiUse>,
    devices: Vec<Device>,
) -> Result<(), AuthnError> {
    let message = PushMessage {
        txn: request.txn.clone(),
        binding_message: request.binding_message.clone(),
        client_name: client.display_name().to_owned(),
        scope: request.scope.clone(),
        acr_values: request.acr_values.clone(),
        expires_at: request.expires_at,
        summary: crate::transaction::summary(request.authorization_details.as_ref()),
    };
    let mut delivered = 0;
    let mut outage = false;
    for device in devices {
        match ctx.push.send(&device, &message).await {
            Ok(()) => delivered += 1,
            Err(PushError::EndpointDisabled) => mark_disabled(ctx, &device).await,
            Err(e @ PushError::Unavailable(_)) => {
                tracing::warn!(device_id = %device.device_id, error = %e, "push failed");
                outage = true;
            }
            Err(e) => tracing::warn!(device_id = %device.device_id, error = %e, "push refused"),
        }
    }
    if delivered > 0 {
        return Ok(());
    }
    ctx.store
        .requests()
        .discard_auth_request(request, jti)
        .await?;
    if outage {
        Err(AuthnError::Internal(Internal::Unavailable))
    } else {
        Err(AuthnError::UnknownUserId(
            "the user has no enrolled authentication device that can be reached".into(),
        ))
    }
}

/// Marks the device of a disabled push endpoint, unless it changed since it was read (enrolled
/// again meanwhile: then its new endpoint deserves a push next time).
async fn mark_disabled(ctx: &Ctx, device: &Device) {
    let id = &device.device_id;
    match ctx.store.accounts().disable_device(device).await {
        Ok(true) => tracing::warn!(device_id = %id, "push endpoint disabled: device marked"),
        Ok(false) => tracing::info!(
            device_id = %id,
            "push endpoint disabled, but the device changed since it was read: left as it is"
        ),
        Err(e) => tracing::warn!(device_id = %id, error = %e, "could not mark device disabled"),
    }
}
