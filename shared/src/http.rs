//! Reading requests and writing successful responses, the same way for every function.

use std::collections::HashMap;

use lambda_http::http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

/// The `Authorization: Bearer` token (RFC 6750 §2.1), if one was sent; the scheme is matched
/// case-insensitively and an empty token counts as none.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    authorization(headers, "bearer")
}

/// The `Authorization: DPoP` token (RFC 9449 §7.1), if one was sent.
pub fn dpop_token(headers: &HeaderMap) -> Option<&str> {
    authorization(headers, "dpop")
}

fn authorization<'a>(headers: &'a HeaderMap, wanted: &str) -> Option<&'a str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case(wanted) && !token.is_empty()).then_some(token)
}

/// The body bytes of a request, whatever form API Gateway delivered them in.
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The media type of the request, lower-case, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("content-type")?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    Some(media.to_ascii_lowercase())
}

/// The compact JWS a device sends: the whole body as `application/jwt`, or the form field
/// `field`. `Err` is the `error_description` of the `invalid_request` that answers anything else;
/// `what` names the JWS in it ("the decision").
pub fn signed_body(req: &Request, field: &str, what: &str) -> Result<String, String> {
    match media_type(req.headers()).as_deref() {
        Some("application/jwt") => std::str::from_utf8(body_bytes(req))
            .map(|s| s.trim().to_owned())
            .map_err(|_| format!("{what} is not a JWT")),
        Some("application/x-www-form-urlencoded") => Form::from_request(req)
            .map_err(|e| e.describe())?
            .get(field)
            .map(str::to_owned)
            .ok_or_else(|| format!("the {field} field is required")),
        _ => Err(format!(
            "send {what} as application/jwt or in the form field {field}"
        )),
    }
}

/// Form parameters, each at most once (RFC 6749 §3.1: "Request and response parameters MUST NOT
/// be included more than once"). Empty values count as absent (RFC 6749 §3.1 again).
#[derive(Debug, Default, Clone)]
pub struct Form {
    params: HashMap<String, String>,
}

#[derive(Debug, PartialEq)]
pub enum FormError {
    NotForm,
    Repeated(String),
}

impl FormError {
    pub fn describe(&self) -> String {
        match self {
            FormError::NotForm => {
                "the request body must be application/x-www-form-urlencoded".into()
            }
            FormError::Repeated(name) => format!("parameter {name} is repeated"),
        }
    }
}

impl Form {
    /// Parses an `application/x-www-form-urlencoded` request body.
    pub fn from_request(req: &Request) -> Result<Self, FormError> {
        if media_type(req.headers()).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(FormError::NotForm);
        }
        Self::parse(body_bytes(req))
    }

    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.contains_key(name.as_ref()) {
                return Err(FormError::Repeated(name.into_owned()));
            }
            params.insert(name.into_owned(), value.into_owned());
        }
        params.retain(|_, v: &mut String| !v.is_empty());
        Ok(Self { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }
}

/// A JSON response; `no_store` for anything carrying tokens or authentication state.
pub fn json_response(status: StatusCode, value: &impl Serialize, no_store: bool) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if no_store {
        builder = builder
            .header("cache-control", "no-store")
            .header("pragma", "no-cache");
    }
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    builder
        .body(Body::Text(body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// 200 with an empty body (RFC 7009 §2.2: the content of a revocation's answer is ignored).
pub fn empty_ok() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("cache-control", "no-store")
        .body(Body::Empty)
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// 204 No Content.
pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("cache-control", "no-store")
        .body(Body::Empty)
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_read_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "bearer  iat-1 ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("iat-1"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn repeated_form_parameter_is_refused() {
        let e = Form::parse(b"scope=openid&scope=email").unwrap_err();
        assert_eq!(e, FormError::Repeated("scope".into()));
    }

    #[test]
    fn form_values_are_percent_decoded() {
        let f = Form::parse(b"binding_message=W4SCT%20ok&login_hint=alice%40example.com").unwrap();
        assert_eq!(f.get("binding_message"), Some("W4SCT ok"));
        assert_eq!(f.get("login_hint"), Some("alice@example.com"));
    }

    #[test]
    fn empty_form_values_count_as_absent() {
        let f = Form::parse(b"login_hint=&scope=openid").unwrap();
        assert!(!f.contains("login_hint"));
    }

    #[test]
    fn media_type_ignores_charset_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            media_type(&h).as_deref(),
            Some("application/x-www-form-urlencoded")
        );
    }
}
