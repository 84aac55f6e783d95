//! Command-line parsing shared by the tooling: `--name value` pairs only.

use std::collections::HashMap;

/// The `--name value` pairs of `args`; `usage` is the answer to `--help` / `-h` and is shown
/// with any mistake.
pub fn flags(args: &[String], usage: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(usage.to_owned());
        }
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}\n\n{usage}"))?;
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pairs_help_and_mistakes() {
        let pairs = flags(&args(&["--port", "8080", "--store", "memory"]), "USAGE").unwrap();
        assert_eq!(pairs["port"], "8080");
        assert_eq!(pairs["store"], "memory");
        assert_eq!(flags(&args(&["--help"]), "USAGE").unwrap_err(), "USAGE");
        assert_eq!(flags(&args(&["-h"]), "USAGE").unwrap_err(), "USAGE");
        assert!(
            flags(&args(&["port"]), "USAGE")
                .unwrap_err()
                .starts_with("unexpected argument port")
        );
        assert_eq!(
            flags(&args(&["--port"]), "USAGE").unwrap_err(),
            "--port needs a value"
        );
    }
}
