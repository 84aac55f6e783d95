//! The browser authenticator of the local API (`GET /_local/authenticator`): a page that enrols
//! the browser as the user's device (a P-256 key WebCrypto generates and keeps non-extractable),
//! lists the requests pushed to it, shows their details and signs the hash-linked decision, as a
//! phone app does. The reference for app developers and the demo of the embedded default; its
//! files are `src/authenticator/`, compiled in.
//!
//! The page only talks to its own origin and runs no inline script, so its Content Security
//! Policy allows nothing else.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

const PAGE: &str = include_str!("authenticator/index.html");
const SCRIPT: &str = include_str!("authenticator/app.js");

/// The policy both answers carry: same-origin script and requests only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The two files of the page.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Asset {
    Page,
    Script,
}

pub fn page(asset: Asset) -> Response<Body> {
    let (content_type, text) = match asset {
        Asset::Page => ("text/html; charset=utf-8", PAGE),
        Asset::Script => ("text/javascript; charset=utf-8", SCRIPT),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
        .body(Body::Text(text.to_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_from_its_own_origin_and_runs_none_inline() {
        assert!(PAGE.contains(r#"src="/_local/authenticator.js""#));
        // Only the one external script tag: an inline one would be blocked by the policy.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(!PAGE.contains(" onclick=") && !PAGE.contains(" onload="));
        let response = page(Asset::Script);
        assert_eq!(
            response.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
}
