//! Text the user's phone shows (`binding_message`, `client_name`): characters that reorder or
//! hide what is displayed are refused, so a client cannot make the phone show another amount or
//! payee than the text it sent and the OP logged (the "Trojan Source" trick, CVE-2021-42574).

/// The characters refused in displayed text: bidirectional embeddings, overrides, isolates and
/// marks, which reorder what follows them; zero-width and invisible formatting characters, which
/// hide text or join it into something else; and Unicode tags, which carry invisible text.
pub fn hides_or_reorders(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                      // soft hyphen
            | '\u{034F}'                // combining grapheme joiner
            | '\u{061C}'                // Arabic letter mark
            | '\u{115F}' | '\u{1160}'   // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'   // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'   // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space, (non-)joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
            | '\u{3164}'                // Hangul filler
            | '\u{FEFF}'                // zero-width no-break space
            | '\u{FFA0}'                // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotations
            | '\u{1D173}'..='\u{1D17A}' // musical formatting
            | '\u{E0000}'..='\u{E007F}' // tags
    )
}

/// The first character of `text` a phone must not be given to show: a control character (line
/// breaks included) or one of `hides_or_reorders`.
pub fn first_unsafe(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() || c == '\u{2028}' || c == '\u{2029}' || hides_or_reorders(c))
}

#[cfg(test)]
mod tests {
    use super::first_unsafe;

    #[test]
    fn bidirectional_overrides_and_isolates_are_unsafe() {
        // "Pay 100 to Bob" that a right-to-left override shows reversed.
        assert_eq!(first_unsafe("Pay \u{202E}001 EUR"), Some('\u{202E}'));
        assert_eq!(first_unsafe("to \u{2067}Bob\u{2069}"), Some('\u{2067}'));
        assert_eq!(first_unsafe("x\u{200F}y"), Some('\u{200F}'));
    }

    #[test]
    fn zero_width_and_invisible_characters_are_unsafe() {
        assert_eq!(first_unsafe("10\u{200B}00 EUR"), Some('\u{200B}'));
        assert_eq!(first_unsafe("Bob\u{FEFF}"), Some('\u{FEFF}'));
        assert_eq!(first_unsafe("A\u{E0041}"), Some('\u{E0041}'));
        assert_eq!(first_unsafe("line\nbreak"), Some('\n'));
    }

    #[test]
    fn ordinary_text_in_any_script_is_safe() {
        for text in [
            "Pay 100 EUR to Bob",
            "Zahlung an Müller – 12,50 €",
            "支付 100 元",
            "שלם 100",
        ] {
            assert_eq!(first_unsafe(text), None, "{text}");
        }
    }
}
