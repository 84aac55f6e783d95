//! Rich authorization requests (RFC 9396) at the backchannel authentication endpoint: the
//! `authorization_details` a client sends are checked against the JSON Schema of each type the
//! OP supports (`shared/schemas/<type>.json`), so that what the user approves is exactly what
//! their phone can show. Every type's schema is closed (`additionalProperties: false`): a field
//! the phone would not show cannot ride along into the grant. Every string in them must also be
//! safe to display (`display::first_unsafe`), as a `binding_message` must.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::display;

/// The types this OP knows, each with its JSON Schema (draft 2020-12).
pub const TYPES: &[(&str, &str)] = &[
    (
        "payment_initiation",
        include_str!("../schemas/payment_initiation.json"),
    ),
    ("generic", include_str!("../schemas/generic.json")),
];

/// Entries one request may carry: each is part of what the user approves on a phone's screen.
pub const MAX_ENTRIES: usize = 10;
/// Bytes of compact JSON the details may take: they are stored with the request and with its
/// tokens, and travel to the device.
pub const MAX_BYTES: usize = 4096;

/// Why `authorization_details` were refused: the `error_description` of
/// `invalid_authorization_details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailsError(pub String);

fn refuse(description: impl Into<String>) -> DetailsError {
    DetailsError(description.into())
}

/// Whether `name` is a type this OP has a schema for.
pub fn known(name: &str) -> bool {
    TYPES.iter().any(|(t, _)| *t == name)
}

/// Each known type's compiled schema, compiled once per process. A schema that does not compile
/// is a defect of this crate (a unit test compiles them all), answered as unsupported, never a
/// panic.
fn validators() -> &'static BTreeMap<&'static str, jsonschema::Validator> {
    static VALIDATORS: OnceLock<BTreeMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        TYPES
            .iter()
            .filter_map(|(name, text)| {
                let schema: Value = serde_json::from_str(text).ok()?;
                let validator = jsonschema::validator_for(&schema).ok()?;
                Some((*name, validator))
            })
            .collect()
    })
}

/// Parses and checks the `authorization_details` parameter: a JSON array of 1 to `MAX_ENTRIES`
/// objects, each of a type in `supported` (the OP's configured types) and, when the client
/// registered `authorization_details_types`, in those; each valid against its type's schema;
/// every string safe to display; at most `MAX_BYTES` once compact. Answers the details as parsed.
pub fn parse(
    raw: &str,
    supported: &[String],
    client_types: Option<&[String]>,
) -> Result<Value, DetailsError> {
    if raw.len() > 4 * MAX_BYTES {
        return Err(refuse(format!(
            "authorization_details must be at most {MAX_BYTES} bytes of JSON"
        )));
    }
    if let Some(name) = crate::ijson::repeated_member(raw.as_bytes()) {
        return Err(refuse(format!(
            "authorization_details must not repeat a member name (RFC 7493): {name}"
        )));
    }
    let details: Value = serde_json::from_str(raw)
        .map_err(|_| refuse("authorization_details must be a JSON array"))?;
    check(details, supported, client_types)
}

/// `parse` for details already parsed (a request object's claim).
pub fn check(
    details: Value,
    supported: &[String],
    client_types: Option<&[String]>,
) -> Result<Value, DetailsError> {
    let Value::Array(entries) = &details else {
        return Err(refuse("authorization_details must be a JSON array"));
    };
    if entries.is_empty() {
        return Err(refuse("authorization_details must not be empty"));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(refuse(format!(
            "authorization_details may hold at most {MAX_ENTRIES} entries"
        )));
    }
    for (i, entry) in entries.iter().enumerate() {
        let kind = entry.get("type").and_then(Value::as_str).ok_or_else(|| {
            refuse(format!(
                "authorization_details[{i}] must be an object with a string type"
            ))
        })?;
        if !supported.iter().any(|t| t == kind) {
            return Err(refuse(format!(
                "authorization_details[{i}]: type {kind:?} is not supported here"
            )));
        }
        if client_types.is_some_and(|allowed| !allowed.iter().any(|t| t == kind)) {
            return Err(refuse(format!(
                "authorization_details[{i}]: this client may not request type {kind:?}"
            )));
        }
        let validator = validators().get(kind).ok_or_else(|| {
            refuse(format!(
                "authorization_details[{i}]: type {kind:?} is not supported here"
            ))
        })?;
        if let Some(error) = validator.iter_errors(entry).next() {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() {
                String::new()
            } else {
                format!(" at {at}")
            };
            return Err(refuse(format!(
                "authorization_details[{i}] ({kind}){at}: {error}"
            )));
        }
        if let Some((path, c)) = first_unsafe_string(entry, String::new()) {
            return Err(refuse(format!(
                "authorization_details[{i}] at {path}: line breaks, control, bidirectional and \
                 zero-width characters cannot be shown (found U+{:04X})",
                u32::from(c)
            )));
        }
    }
    if details.to_string().len() > MAX_BYTES {
        return Err(refuse(format!(
            "authorization_details must be at most {MAX_BYTES} bytes of JSON"
        )));
    }
    Ok(details)
}

/// The first string (member name or value) under `value` that a phone must not be given to
/// show, with its JSON pointer.
fn first_unsafe_string(value: &Value, path: String) -> Option<(String, char)> {
    match value {
        Value::String(s) => display::first_unsafe(s).map(|c| (path, c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_unsafe_string(v, format!("{path}/{i}"))),
        Value::Object(members) => members.iter().find_map(|(name, v)| {
            let here = format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
            match display::first_unsafe(name) {
                Some(c) => Some((here, c)),
                None => first_unsafe_string(v, here),
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all() -> Vec<String> {
        TYPES.iter().map(|(t, _)| (*t).to_owned()).collect()
    }

    fn payment() -> Value {
        json!({
            "type": "payment_initiation",
            "actions": ["initiate"],
            "instructedAmount": {"currency": "EUR", "amount": "123.50"},
            "creditorName": "Merchant A",
            "creditorAccount": {"iban": "DE02100100109307118603"},
            "remittanceInformationUnstructured": "Ref Number Merchant"
        })
    }

    fn refused(details: Value) -> String {
        check(details, &all(), None).unwrap_err().0
    }

    #[test]
    fn every_bundled_schema_compiles() {
        assert_eq!(validators().len(), TYPES.len());
    }

    #[test]
    fn a_payment_and_a_generic_approval_pass() {
        let details = json!([payment(), {"type": "generic", "description": "Let Travel Agent book a flight to Lisbon", "actions": ["book"]}]);
        assert_eq!(check(details.clone(), &all(), None), Ok(details.clone()));
        assert_eq!(parse(&details.to_string(), &all(), None), Ok(details));
    }

    #[test]
    fn the_shape_of_the_parameter_is_checked() {
        assert!(
            parse("{", &all(), None)
                .unwrap_err()
                .0
                .contains("JSON array")
        );
        assert!(refused(json!(payment())).contains("JSON array"));
        assert!(refused(json!([])).contains("empty"));
        assert!(refused(json!(vec![payment(); MAX_ENTRIES + 1])).contains("at most"));
        assert!(refused(json!([{"amount": 1}])).contains("string type"));
        assert!(refused(json!(["payment_initiation"])).contains("string type"));
    }

    #[test]
    fn unknown_unconfigured_and_unregistered_types_are_refused() {
        assert!(refused(json!([{"type": "account_information"}])).contains("not supported"));
        let only_generic = vec!["generic".to_owned()];
        let e = check(json!([payment()]), &only_generic, None)
            .unwrap_err()
            .0;
        assert!(e.contains("not supported"), "{e}");
        let e = check(json!([payment()]), &all(), Some(&only_generic))
            .unwrap_err()
            .0;
        assert!(e.contains("this client may not"), "{e}");
    }

    #[test]
    fn a_payment_must_match_its_schema() {
        let with = |pointer: &str, value: Value| {
            let mut p = payment();
            *p.pointer_mut(pointer).unwrap() = value;
            refused(json!([p]))
        };
        let e = with("/instructedAmount/amount", json!(123.5));
        assert!(e.contains("/instructedAmount/amount"), "{e}");
        assert!(
            with("/instructedAmount/amount", json!("1e3")).contains("/instructedAmount/amount")
        );
        assert!(with("/instructedAmount/currency", json!("eur")).contains("currency"));
        assert!(
            with("/creditorAccount", json!({"iban": "not an iban"})).contains("creditorAccount")
        );
        assert!(with("/creditorAccount", json!({})).contains("creditorAccount"));
        assert!(with("/actions", json!(["transfer_all"])).contains("actions"));
        let mut extra = payment();
        extra["hiddenFee"] = json!("1000.00");
        assert!(refused(json!([extra])).contains("hiddenFee"));
        let mut missing = payment();
        missing.as_object_mut().unwrap().remove("creditorName");
        assert!(refused(json!([missing])).contains("creditorName"));
    }

    #[test]
    fn text_that_would_display_otherwise_is_refused() {
        let mut p = payment();
        p["creditorName"] = json!("Bob \u{202E}evil");
        let e = refused(json!([p]));
        assert!(e.contains("/creditorName") && e.contains("U+202E"), "{e}");
        let generic = json!({"type": "generic", "description": "Pay\nmore"});
        assert!(refused(json!([generic])).contains("U+000A"));
    }

    #[test]
    fn oversized_details_are_refused() {
        let long = "x".repeat(200);
        let entry = json!({"type": "generic", "description": long, "identifier": "x".repeat(140),
            "actions": (0..10).map(|i| format!("{i}{}", "a".repeat(60))).collect::<Vec<_>>()});
        let e = refused(json!(vec![entry; MAX_ENTRIES]));
        assert!(e.contains(&format!("{MAX_BYTES} bytes")), "{e}");
    }
}
