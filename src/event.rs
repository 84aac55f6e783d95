//! API Gateway HTTP API (payload format 2.0) events, built the way API Gateway builds them, and
//! turned into `lambda_http` requests by `lambda_http` itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// An HTTP request as the local server or a test received it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path with an optional `?query`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut req = self.header("content-type", "application/x-www-form-urlencoded");
        req.body = body.into_bytes();
        req
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self = self.header("content-type", content_type);
        self.body = body.into();
        self
    }

    /// The API Gateway v2 event for this request, as JSON.
    pub fn to_event(&self, request_id: &str, epoch_ms: i64) -> Value {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let name = name.to_ascii_lowercase();
            // API Gateway joins repeated headers with commas.
            let joined = match headers.get(&name).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{value}"),
                None => value.clone(),
            };
            headers.insert(name, joined.into());
        }
        let mut params = Map::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let joined = match params.get(k.as_ref()).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.into_owned(),
            };
            params.insert(k.into_owned(), joined.into());
        }
        let host = headers
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or("127.0.0.1")
            .to_owned();
        let (body, base64) = match std::str::from_utf8(&self.body) {
            _ if self.body.is_empty() => (Value::Null, false),
            Ok(text) => (Value::String(text.into()), false),
            Err(_) => (Value::String(STANDARD.encode(&self.body)), true),
        };
        let route_key = format!("{} {}", self.method, path);
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": host,
                "domainPrefix": "local",
                "http": {
                    "method": self.method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::Null),
                },
                "requestId": request_id,
                "routeKey": route_key,
                "stage": "$default",
                "timeEpoch": epoch_ms,
            },
            "isBase64Encoded": base64,
        });
        if !params.is_empty() {
            event["queryStringParameters"] = Value::Object(params);
        }
        if !body.is_null() {
            event["body"] = body;
        }
        event
    }

    /// The `lambda_http` request a Lambda would receive for this request.
    pub fn to_lambda(
        &self,
        request_id: &str,
        epoch_ms: i64,
    ) -> Result<lambda_http::Request, serde_json::Error> {
        lambda_http::request::from_str(&self.to_event(request_id, epoch_ms).to_string())
    }
}
