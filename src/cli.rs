//! Command-line parsing shared by the tooling: `--name value` pairs only, and how a tool that
//! stops early says so.

use std::collections::HashMap;
use std::process::ExitCode;

/// Why a tool stops without doing its work, or how its work failed.
#[derive(Debug, PartialEq)]
pub enum Stop {
    /// `--help` or `-h`: the usage was asked for.
    Help(String),
    /// A mistake on the command line: what is wrong (with the usage where that helps).
    Usage(String),
    /// The work itself failed.
    Failed(String),
}

/// The tools' own errors are failures of the work; command-line mistakes are named `Usage`.
impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Failed(message)
    }
}

impl Stop {
    /// Help asked for goes to stdout with success, so `--help | less` shows it; a mistake goes
    /// to stderr with status 2 and a failure with status 1, so scripts can tell them apart.
    pub fn exit(&self, program: &str) -> ExitCode {
        match self {
            Stop::Help(usage) => {
                println!("{}", usage.trim_end());
                ExitCode::SUCCESS
            }
            Stop::Usage(message) => {
                eprintln!("{program}: {}", message.trim_end());
                ExitCode::from(2)
            }
            Stop::Failed(message) => {
                eprintln!("{program}: {message}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The `--name value` pairs of `args`; `usage` is the answer to `--help` / `-h` and is shown
/// with an unexpected argument.
/// The flags that take no value: present means on.
const SWITCHES: &[&str] = &["seed-dynamodb", "local-endpoints-on-dynamodb"];

pub fn flags(args: &[String], usage: &str) -> Result<Flags, Stop> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if is_help(flag) {
            return Err(Stop::Help(usage.to_owned()));
        }
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| Stop::Usage(format!("unexpected argument {flag}\n\n{usage}")))?;
        if SWITCHES.contains(&name) {
            out.insert(name.to_owned(), String::new());
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| Stop::Usage(format!("{flag} needs a value")))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(Flags {
        values: out,
        usage: usage.to_owned(),
    })
}

/// The `--name value` flags of a command line, by name.
#[derive(Debug, PartialEq)]
pub struct Flags {
    values: HashMap<String, String>,
    usage: String,
}

impl Flags {
    /// The value of a flag the command cannot do without; its absence is a usage error.
    pub fn required(&self, name: &str) -> Result<String, Stop> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| Stop::Usage(format!("--{name} is required\n\n{}", self.usage)))
    }
}

impl std::ops::Deref for Flags {
    type Target = HashMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

/// For tools with subcommands: the command and the arguments after it. `--help` before any
/// command is help; no command at all is a mistake.
pub fn command<'a>(args: &'a [String], usage: &str) -> Result<(&'a str, &'a [String]), Stop> {
    match args.split_first() {
        None => Err(Stop::Usage(format!("a command is required\n\n{usage}"))),
        Some((first, _)) if is_help(first) => Err(Stop::Help(usage.to_owned())),
        Some((first, _)) if first.starts_with('-') => Err(Stop::Usage(format!(
            "a command must come before {first}\n\n{usage}"
        ))),
        Some((first, rest)) => Ok((first, rest)),
    }
}

fn is_help(arg: &str) -> bool {
    arg == "--help" || arg == "-h"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_are_name_value_pairs() {
        let pairs = flags(&args(&["--port", "8080", "--store", "memory"]), "USAGE").unwrap();
        assert_eq!(pairs["port"], "8080");
        assert_eq!(pairs["store"], "memory");
    }

    #[test]
    fn help_anywhere_among_the_flags_is_help_not_a_mistake() {
        for line in [&["--help"][..], &["-h"], &["--port", "1", "--help"]] {
            assert_eq!(
                flags(&args(line), "USAGE"),
                Err(Stop::Help("USAGE".into())),
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_bare_word_or_a_flag_without_value_is_a_mistake() {
        match flags(&args(&["port"]), "USAGE") {
            Err(Stop::Usage(m)) => assert!(m.starts_with("unexpected argument port"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            flags(&args(&["--port"]), "USAGE"),
            Err(Stop::Usage("--port needs a value".into()))
        );
    }

    #[test]
    fn help_before_a_command_is_help_and_no_command_is_a_mistake() {
        assert_eq!(
            command(&args(&["--help"]), "USAGE"),
            Err(Stop::Help("USAGE".into()))
        );
        assert_eq!(
            command(&args(&["-h"]), "USAGE"),
            Err(Stop::Help("USAGE".into()))
        );
        assert!(matches!(command(&[], "USAGE"), Err(Stop::Usage(m)) if m.ends_with("USAGE")));
        assert!(matches!(
            command(&args(&["--seed", "x"]), "USAGE"),
            Err(Stop::Usage(m)) if m.starts_with("a command must come before --seed")
        ));
        let line = args(&["import", "--seed", "x"]);
        let (name, rest) = command(&line, "USAGE").unwrap();
        assert_eq!((name, rest), ("import", &line[1..]));
    }
}
