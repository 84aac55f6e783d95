//! Command-line parsing shared by the tooling: `--name value` pairs only.

use std::collections::HashMap;

/// The `--name value` pairs of `args`; `usage` is shown with any mistake.
pub fn flags(args: &[String], usage: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected {flag}\n{usage}"))?;
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(out)
}
