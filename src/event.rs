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

    fn to_json(&self) -> Value {
        json!({
            "clientCertPem": self.pem,
            "subjectDN": self.subject_dn,
            "issuerDN": self.issuer_dn,
            "serialNumber": self.serial_number,
            "validity": {"notBefore": self.not_before, "notAfter": self.not_after},
        })
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
        if let Some(cert) = &self.client_cert {
            event["requestContext"]["authentication"] = json!({"clientCert": cert.to_json()});
        }
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

    #[test]
    fn a_client_certificate_is_described_where_api_gateway_puts_it() {
        let event = with_cert("demo-mtls-rp.crt").to_event("id", 0);
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
        let event = HttpRequest::new("GET", "/userinfo").to_event("id", 0);
        assert!(event["requestContext"].get("authentication").is_none());
    }
}
