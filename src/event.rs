//! API Gateway HTTP API (payload format 2.0) events, built the way API Gateway builds them, and
//! turned into `lambda_http` requests by `lambda_http` itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextAuthentication,
    ApiGatewayV2httpRequestContextAuthenticationClientCert,
    ApiGatewayV2httpRequestContextAuthenticationClientCertValidity,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::http::header::{HOST, USER_AGENT};
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_http::request::LambdaRequest;

/// An HTTP request as the local server or a test received it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path with an optional `?query`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The certificate the client presented in a mutual-TLS handshake, if any.
    pub client_cert: Option<ClientCert>,
}

/// A client certificate as API Gateway describes it to the function, in
/// `requestContext.authentication.clientCert` (payload 2.0).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCert {
    pem: String,
    subject_dn: String,
    issuer_dn: String,
    serial_number: String,
    not_before: String,
    not_after: String,
}

impl ClientCert {
    /// The description of the DER certificate `der`, or why it cannot be read.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
        let tbs = &cert.tbs_certificate;
        let body = STANDARD.encode(der);
        let lines: Vec<_> = body
            .as_bytes()
            .chunks(64)
            .map(String::from_utf8_lossy)
            .collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        );
        // The serial as OpenSSL prints it, byte by byte: its DER sign byte is not part of it.
        let serial = tbs.serial_number.as_bytes();
        let serial = match serial {
            [0, rest @ ..] if !rest.is_empty() => rest,
            all => all,
        };
        let serial_number = serial
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(Self {
            pem,
            subject_dn: tbs.subject.to_string(),
            issuer_dn: tbs.issuer.to_string(),
            serial_number,
            not_before: openssl_time(tbs.validity.not_before),
            not_after: openssl_time(tbs.validity.not_after),
        })
    }

    fn to_event(&self) -> ApiGatewayV2httpRequestContextAuthenticationClientCert {
        let mut validity =
            ApiGatewayV2httpRequestContextAuthenticationClientCertValidity::default();
        validity.not_before = Some(self.not_before.clone());
        validity.not_after = Some(self.not_after.clone());
        let mut cert = ApiGatewayV2httpRequestContextAuthenticationClientCert::default();
        cert.client_cert_pem = Some(self.pem.clone());
        cert.subject_dn = Some(self.subject_dn.clone());
        cert.issuer_dn = Some(self.issuer_dn.clone());
        cert.serial_number = Some(self.serial_number.clone());
        cert.validity = validity;
        cert
    }
}

/// A certificate time the way API Gateway writes it (OpenSSL's): `Aug  5 09:36:04 2021 GMT`.
fn openssl_time(time: x509_cert::time::Time) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = time.to_date_time();
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[usize::from(t.month().clamp(1, 12)) - 1],
        t.day(),
        t.hour(),
        t.minutes(),
        t.seconds(),
        t.year()
    )
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

    /// The API Gateway v2 event for this request; repeated headers are joined with commas, as
    /// API Gateway joins them. `None` when a header is not a valid HTTP header.
    pub fn to_event(&self, request_id: &str, epoch_ms: i64) -> Option<ApiGatewayV2httpRequest> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = match headers.get(&name).map(HeaderValue::to_str) {
                Some(prev) => HeaderValue::try_from(format!("{},{value}", prev.ok()?)),
                None => HeaderValue::try_from(value.as_str()),
            };
            headers.insert(name, value.ok()?);
        }
        let method = Method::from_bytes(self.method.as_bytes()).ok()?;
        Some(event(Event {
            method,
            target: &self.target,
            headers,
            body: self.body.clone(),
            client_cert: self.client_cert.as_ref(),
            request_id,
            epoch_ms,
        }))
    }

    /// The `lambda_http` request a Lambda would receive for this request.
    pub fn to_lambda(&self, request_id: &str, epoch_ms: i64) -> Option<lambda_http::Request> {
        self.to_event(request_id, epoch_ms).map(into_lambda)
    }
}

/// What an API Gateway event is made of; `headers` hold one value per name.
pub struct Event<'a> {
    pub method: Method,
    /// Path with an optional `?query`.
    pub target: &'a str,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub client_cert: Option<&'a ClientCert>,
    pub request_id: &'a str,
    pub epoch_ms: i64,
}

/// The API Gateway HTTP API (payload 2.0) event of a request, field by field as API Gateway
/// fills it. Built as the typed event rather than as JSON to parse again: the JSON round trip
/// cost more CPU than the handlers' own work, and `lambda_http` reads the same struct either way.
/// `queryStringParameters` stays empty: `lambda_http` reads the raw query string instead.
pub fn event(parts: Event<'_>) -> ApiGatewayV2httpRequest {
    let (path, query) = parts.target.split_once('?').unwrap_or((parts.target, ""));
    let (body, base64) = match String::from_utf8(parts.body) {
        Ok(text) if text.is_empty() => (None, false),
        Ok(text) => (Some(text), false),
        Err(e) => (Some(STANDARD.encode(e.as_bytes())), true),
    };
    let text = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let route_key = format!("{} {}", parts.method, path);

    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method;
    http.path = Some(path.to_owned());
    http.protocol = Some("HTTP/1.1".into());
    http.source_ip = Some("127.0.0.1".into());
    http.user_agent = text(USER_AGENT);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some(route_key.clone());
    context.account_id = Some("123456789012".into());
    context.stage = Some("$default".into());
    context.request_id = Some(parts.request_id.to_owned());
    context.apiid = Some("local".into());
    context.domain_name = Some(text(HOST).unwrap_or_else(|| "127.0.0.1".into()));
    context.domain_prefix = Some("local".into());
    context.time_epoch = parts.epoch_ms;
    context.http = http;
    context.authentication = parts.client_cert.map(|cert| {
        let mut authentication = ApiGatewayV2httpRequestContextAuthentication::default();
        authentication.client_cert = Some(cert.to_event());
        authentication
    });

    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".into());
    event.route_key = Some(route_key);
    event.raw_path = Some(path.to_owned());
    event.raw_query_string = Some(query.to_owned());
    event.headers = parts.headers;
    event.request_context = context;
    event.body = body;
    event.is_base64_encoded = base64;
    event
}

/// The `lambda_http` request of an event: `lambda_http`'s own conversion, the one its runtime
/// applies to the event it deserialised.
pub fn into_lambda(event: ApiGatewayV2httpRequest) -> lambda_http::Request {
    LambdaRequest::ApiGatewayV2(event).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    use x509_cert::der::DateTime;
    use x509_cert::der::asn1::GeneralizedTime;

    fn pem(name: &str) -> String {
        let path = format!("{}/tests/keys/pki/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn with_cert(name: &str) -> HttpRequest {
        let mut request = HttpRequest::new("POST", "/token").header("host", "127.0.0.1:8443");
        request.client_cert = Some(ClientCert::from_der(&der(&pem(name))).unwrap());
        request
    }

    /// The event as the JSON API Gateway would send.
    fn json(request: &HttpRequest) -> serde_json::Value {
        serde_json::to_value(request.to_event("id", 0).unwrap()).unwrap()
    }

    #[test]
    fn a_client_certificate_is_described_where_api_gateway_puts_it() {
        let event = json(&with_cert("demo-mtls-rp.crt"));
        let cert = &event["requestContext"]["authentication"]["clientCert"];
        assert_eq!(cert["clientCertPem"], pem("demo-mtls-rp.crt"));
        assert_eq!(cert["subjectDN"], "CN=demo-mtls-rp,O=Demo Bank,C=GB");
        assert_eq!(
            cert["issuerDN"],
            "CN=Demo mTLS CA (DEMO ONLY),O=Demo CIBA OP,C=GB"
        );
        let serial = cert["serialNumber"].as_str().unwrap();
        assert!(
            serial.split(':').all(|byte| byte.len() == 2
                && byte
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
            "{serial}"
        );
        for field in ["notBefore", "notAfter"] {
            let time = cert["validity"][field].as_str().unwrap();
            assert!(time.len() == 24 && time.ends_with(" GMT"), "{time}");
        }
    }

    #[test]
    fn certificate_times_are_written_as_openssl_writes_them() {
        let time = |y, m, d, h, min, s| {
            let at = DateTime::new(y, m, d, h, min, s).unwrap();
            openssl_time(GeneralizedTime::from_date_time(at).into())
        };
        assert_eq!(time(2021, 8, 5, 9, 36, 4), "Aug  5 09:36:04 2021 GMT");
        assert_eq!(time(2019, 5, 28, 12, 30, 2), "May 28 12:30:02 2019 GMT");
    }

    #[test]
    fn lambda_http_reads_the_client_certificate_of_the_event() {
        let request = with_cert("demo-mtls-self.crt").to_lambda("id", 0).unwrap();
        let RequestContext::ApiGatewayV2(ctx) = request.request_context() else {
            panic!("not an HTTP API (payload 2.0) request");
        };
        let cert = ctx.authentication.unwrap().client_cert.unwrap();
        assert_eq!(cert.client_cert_pem.unwrap(), pem("demo-mtls-self.crt"));
        assert_eq!(
            cert.subject_dn.as_deref(),
            Some("CN=demo-mtls-self,O=Demo Shop,C=GB")
        );
    }

    #[test]
    fn without_a_client_certificate_there_is_no_authentication() {
        let event = json(&HttpRequest::new("GET", "/userinfo"));
        assert!(event["requestContext"].get("authentication").is_none());
    }

    /// What the handlers read of a request, in a form that compares.
    fn seen(request: &lambda_http::Request) -> String {
        let query = request.query_string_parameters();
        let mut query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        query.sort();
        format!(
            "{} {} {:?} {:?} {:?} {:?} {:?}",
            request.method(),
            request.uri(),
            request.headers(),
            request.body(),
            request.raw_http_path(),
            query,
            request.request_context(),
        )
    }

    #[test]
    fn the_typed_event_makes_the_request_its_json_makes() {
        let mut request = HttpRequest::new("POST", "/token?x=1&y=a%20b&x=2")
            .header("host", "127.0.0.1:8080")
            .header("User-Agent", "test")
            .header("accept", "text/plain")
            .header("accept", "application/json")
            .form(&[("grant_type", "urn:x"), ("auth_req_id", "a b")]);
        request.client_cert = with_cert("demo-mtls-rp.crt").client_cert;
        let event = request.to_event("id", 1_700_000_000_000).unwrap();
        let parsed = lambda_http::request::from_str(&serde_json::to_string(&event).unwrap());
        let direct = request.to_lambda("id", 1_700_000_000_000).unwrap();
        assert_eq!(seen(&direct), seen(&parsed.unwrap()));
        assert_eq!(direct.headers()["accept"], "text/plain,application/json");
        for body in [Vec::new(), vec![0xff, 0x00, 0x80]] {
            let mut request = HttpRequest::new("POST", "/register");
            request.body = body;
            let event = request.to_event("id", 0).unwrap();
            let parsed = lambda_http::request::from_str(&serde_json::to_string(&event).unwrap());
            assert_eq!(seen(&into_lambda(event)), seen(&parsed.unwrap()));
        }
    }

    #[test]
    fn a_header_http_cannot_carry_is_no_event() {
        let request = HttpRequest::new("GET", "/jwks").header("x-bad", "line\nbreak");
        assert!(request.to_event("id", 0).is_none());
    }
}
