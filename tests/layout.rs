//! The workspace's shape: what a deployed Lambda links, and files one person reads in a sitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The crates no Lambda may link: test and local-run code.
const LOCAL_ONLY: &[&str] = &["ciba-testkit", "ciba-local"];
/// The longest source file in `shared/` and `functions/` (architecture.md: about 600 lines).
const MAX_LINES: usize = 600;

/// Every workspace package and the workspace packages it depends on for its build (normal and
/// build dependencies, not dev-dependencies), from `cargo metadata`.
fn workspace_dependencies() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap())
                .filter(|d| names.contains(d))
                .map(str::to_owned)
                .collect();
            let manifest = p["manifest_path"].as_str().unwrap().to_owned();
            (p["name"].as_str().unwrap().to_owned(), (manifest, deps))
        })
        .collect()
}

#[test]
fn no_lambda_links_test_or_local_code() {
    let packages = workspace_dependencies();
    let functions = format!("{}/functions/", env!("CARGO_MANIFEST_DIR"));
    let lambdas: Vec<&String> = packages
        .iter()
        .filter(|(_, (manifest, _))| manifest.starts_with(&functions))
        .map(|(name, _)| name)
        .collect();
    let crates = std::fs::read_dir(&functions).unwrap().count();
    assert_eq!(lambdas.len(), crates, "{lambdas:?}");
    for lambda in lambdas {
        let mut seen = BTreeSet::new();
        let mut todo = vec![lambda.clone()];
        while let Some(name) = todo.pop() {
            if seen.insert(name.clone()) {
                todo.extend(packages[&name].1.iter().cloned());
            }
        }
        for local in LOCAL_ONLY {
            assert!(!seen.contains(*local), "{lambda} links {local}: {seen:?}");
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_in_shared_or_functions_is_longer_than_one_sitting() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("shared"), &mut files);
    rust_files(&root.join("functions"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split by concept: {long:?}");
}
