//! I-JSON's rule that serde_json does not keep (RFC 7493 §2.3): no object may repeat a member
//! name. serde_json keeps the last of repeated members, so `"creditorName":"Savings Ltd",
//! "creditorName":"Mallory"` would show Mallory on the phone while a parser that keeps the first
//! (the RP's, an auditor's) reads Savings Ltd. Text that will be hashed with RFC 8785 (`shown`)
//! or signed (a JWS header and payload, RFC 7515 §5.2) is checked with this before it is used.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The first member name some object of `text` repeats, or `None` (also for text that is not
/// JSON: its parser says what is wrong with it).
pub fn repeated_member(text: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Checked>(text) {
        Ok(_) => None,
        Err(e) => {
            let message = e.to_string();
            message
                .strip_prefix(REPEATED)
                .map(|rest| rest.split(" at line ").next().unwrap_or(rest).to_owned())
        }
    }
}

const REPEATED: &str = "repeated member name ";

/// Any JSON value, its objects checked for repeated member names.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format!("{REPEATED}{name:?}")));
            }
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_is_found_at_any_depth_and_however_it_is_escaped() {
        assert_eq!(
            repeated_member(br#"{"a":1,"a":2}"#).as_deref(),
            Some("\"a\"")
        );
        assert_eq!(
            repeated_member(br#"[{"x":{"creditorName":"S","creditor\u004eame":"M"}}]"#).as_deref(),
            Some("\"creditorName\"")
        );
        assert_eq!(
            repeated_member(br#"{"a":{"b":1},"b":{"a":2},"c":[{"a":1},{"a":2}]}"#),
            None
        );
        assert_eq!(repeated_member(b"not json"), None);
    }
}
