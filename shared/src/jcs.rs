//! The JSON Canonicalization Scheme (RFC 8785): one byte sequence for one JSON value, whatever
//! member order, whitespace or escapes it was written with, so that the OP and the user's device
//! hash the very same bytes for what the device showed (`transaction::txn_hash`).
//!
//! - literals as JSON writes them; strings with JSON's minimal escapes (ECMAScript's
//!   `JSON.stringify`: `\b \t \n \f \r \" \\`, other controls as `\u00xx` in lower-case hex,
//!   everything else as itself in UTF-8);
//! - numbers as ECMAScript's `Number.prototype.toString` writes them (`ryu_js`);
//! - object members sorted by the UTF-16 code units of their names, arrays in order, no
//!   whitespace.

use serde_json::{Number, Value};

/// The canonical form of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(n, out),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(name, out);
                out.push(':');
                write(member, out);
            }
            out.push('}');
        }
    }
}

fn number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
        // ECMAScript writes -0 as 0.
        let f = if f == 0.0 { 0.0 } else { f };
        out.push_str(ryu_js::Buffer::new().format_finite(f));
    } else {
        // serde_json holds no NaN or infinity; JSON has none either.
        out.push_str("null");
    }
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_sort_by_utf16_code_units_as_rfc_8785_3_2_3_shows() {
        // RFC 8785 §3.2.3: the names sort as "\r", "1", "\u0080", "\u00f6", "\u20ac",
        // "\ud83d\ude00" (U+1F600, a surrogate pair, before U+FB33), "\ufb33".
        let input: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        assert_eq!(
            canonicalize(&input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\
             \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn the_rfc_8785_3_2_2_example_is_written_as_the_rfc_writes_it() {
        let input: Value = serde_json::from_str(
            r#"{
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }"#,
        )
        .unwrap();
        assert_eq!(
            canonicalize(&input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn integers_nesting_and_empty_containers() {
        assert_eq!(
            canonicalize(&json!({"b": [1, -2, {"z": {}, "a": []}], "a": 1_700_000_000_i64})),
            r#"{"a":1700000000,"b":[1,-2,{"a":[],"z":{}}]}"#
        );
        assert_eq!(canonicalize(&json!(-0.0)), "0");
        assert_eq!(canonicalize(&json!(1.0)), "1");
    }
}
