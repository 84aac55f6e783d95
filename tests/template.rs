//! `template.yaml`, `functions/`, `events/` and the local API's routes must agree: every function
//! crate is deployed, every deployed route is served locally and has an event file.

use std::collections::BTreeSet;

fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn template() -> String {
    std::fs::read_to_string(root("template.yaml")).unwrap()
}

fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.trim()
        .strip_prefix(key)
        .map(|v| v.trim().trim_matches('"'))
}

/// The `Method` / `Path` pairs of the template's HttpApi events.
fn template_routes() -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    let mut method = None;
    for line in template().lines() {
        if let Some(m) = value_of(line, "Method:") {
            method = Some(m.to_owned());
        } else if let Some(path) = value_of(line, "Path:") {
            let m = method.take().expect("Method before Path in template.yaml");
            routes.insert(format!("{m} {path}"));
        }
    }
    routes
}

#[test]
fn every_function_crate_has_a_template_resource() {
    let binaries: BTreeSet<String> = template()
        .lines()
        .filter_map(|l| value_of(l, "Binary:"))
        .map(str::to_owned)
        .collect();
    let crates: BTreeSet<String> = std::fs::read_dir(root("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(binaries, crates);
}

/// `sam build` runs `cargo lambda build --bin <Binary>` in the function's `CodeUri`, so that
/// must be the function's own crate: at the workspace root cargo looks for the binary in the root
/// package (the local API) and fails.
#[test]
fn every_function_builds_from_its_own_crate_directory() {
    let mut binary = None;
    let mut pairs = Vec::new();
    for line in template().lines() {
        if let Some(b) = value_of(line, "Binary:") {
            binary = Some(b.to_owned());
        } else if let Some(code_uri) = value_of(line, "CodeUri:") {
            let b = binary
                .take()
                .expect("Binary before CodeUri in every function");
            pairs.push((b, code_uri.to_owned()));
        }
    }
    let crates = std::fs::read_dir(root("functions")).unwrap().count();
    assert_eq!(pairs.len(), crates, "one CodeUri per function: {pairs:?}");
    for (binary, code_uri) in pairs {
        assert_eq!(code_uri, format!("functions/{binary}"));
    }
}

#[test]
fn every_template_route_is_served_by_the_local_api() {
    let local: BTreeSet<String> = ciba_local::ROUTES
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(template_routes(), local);
}

#[test]
fn every_template_route_has_an_event_file() {
    let covered: BTreeSet<String> = std::fs::read_dir(root("events"))
        .unwrap()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).ok()?;
            let event: serde_json::Value = serde_json::from_str(&text).ok()?;
            event["routeKey"].as_str().map(str::to_owned)
        })
        .collect();
    let missing: Vec<String> = template_routes()
        .into_iter()
        .filter(|r| !covered.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without an event file: {missing:?}"
    );
}

/// The names of the environment variables the template gives any function (Globals included).
fn environment_variable_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // The indentation of `Variables:`, then of its entries (the first line below it).
    let mut block: Option<(usize, Option<usize>)> = None;
    for line in template().lines() {
        let depth = line.len() - line.trim_start().len();
        if line.trim() == "Variables:" {
            block = Some((depth, None));
        } else if let Some((outer, entries)) = block {
            if line.trim().is_empty() || depth <= outer {
                block = None;
            } else if entries.is_none_or(|entries| entries == depth) {
                block = Some((outer, Some(depth)));
                if let Some((name, _)) = line.trim().split_once(':') {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// Secrets live in Secrets Manager, read at cold start: a function's environment may name one
/// (`*_ARN`, `*_ID`) or hold hashes of one (`*_HASHES`), never hold one.
#[test]
fn no_function_environment_variable_holds_a_secret() {
    let names = environment_variable_names();
    for expected in ["ISSUER", "NOTIFY_ATTEMPTS", "OP_SECRET_ARN"] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    let secret_looking: Vec<&String> = names
        .iter()
        .filter(|n| {
            ["KEY", "SECRET", "TOKEN", "PASSWORD"]
                .iter()
                .any(|w| n.contains(w))
        })
        .filter(|n| !["_ARN", "_ID", "_HASHES"].iter().any(|s| n.ends_with(s)))
        // Policies about tokens, not tokens; the kids of keys stored only encrypted, not keys.
        .filter(|n| {
            ![
                "ACCESS_TOKEN_AUDIENCE",
                "REFRESH_TOKEN_MAX_LIFETIME",
                "SIGNING_KEY_ENVELOPE",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(secret_looking.is_empty(), "{secret_looking:?}");
}

/// `tests/run` fails on any checkov finding; a finding the template does not fix is skipped
/// with its reason beside it.
#[test]
fn every_checkov_skip_gives_its_reason() {
    let template = template();
    let lines: Vec<&str> = template.lines().collect();
    let mut skips = 0;
    for (i, line) in lines.iter().enumerate() {
        if let Some(id) = value_of(line, "- id:") {
            skips += 1;
            let comment = lines.get(i + 1).and_then(|l| value_of(l, "comment:"));
            let reason = lines.get(i + 2).map(|l| l.trim()).unwrap_or_default();
            assert!(
                comment == Some(">-") && reason.len() > 40,
                "checkov skip {id} has no reason"
            );
        }
    }
    assert!(skips > 0, "no checkov skip found: did the syntax change?");
}

/// The `AWS::Serverless::Function` resources as (logical id, their lines).
fn function_sections() -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in template().lines() {
        let resource = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|l| !l.starts_with(' ') && !l.contains(' '));
        match resource {
            Some(id) if id.ends_with("Function") => sections.push((id.to_owned(), Vec::new())),
            Some(_) => {
                sections.push((String::new(), Vec::new()));
            }
            None => {
                if let Some((_, lines)) = sections.last_mut() {
                    lines.push(line.to_owned());
                }
            }
        }
    }
    sections.retain(|(id, _)| !id.is_empty());
    sections
}

const ACTIVE_KEY_ARN: &str =
    "Resource: !If [SigningKeySlotB, !GetAtt SigningKeyB.Arn, !GetAtt SigningKey.Arn]";

/// A retired key only verifies: `kms:Sign` is granted on the signing key alone, whichever slot
/// holds it.
#[test]
fn only_the_signing_key_may_sign() {
    let mut signers = Vec::new();
    for (id, lines) in function_sections() {
        for (i, line) in lines.iter().enumerate() {
            if line.contains("kms:Sign") {
                signers.push(id.clone());
                assert_eq!(
                    lines.get(i + 1).map(|l| l.trim()),
                    Some(ACTIVE_KEY_ARN),
                    "{id}: kms:Sign on anything but the signing key"
                );
            }
        }
    }
    assert!(
        signers.contains(&"TokenFunction".to_owned()),
        "no signer found: {signers:?}"
    );
}

/// Every function builds the key ring at cold start (`KMS_KEY_ID` is global): one that may read
/// the signing key's public half and not the retired keys' would fail to start once a key is
/// retired.
#[test]
fn every_function_reading_the_signing_key_may_read_the_retired_keys() {
    let mut readers = 0;
    for (id, lines) in function_sections() {
        let trimmed: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
        let reads_active = trimmed.contains(&ACTIVE_KEY_ARN);
        let retired = trimmed
            .iter()
            .position(|l| *l == "Resource: !Ref RetiredSigningKeyArns");
        assert_eq!(
            reads_active,
            retired.is_some(),
            "{id}: reads the signing key but not the retired ones, or the reverse"
        );
        if let Some(i) = retired {
            readers += 1;
            assert_eq!(
                trimmed[i - 3..i],
                [
                    "- HasRetiredSigningKeys",
                    "- Effect: Allow",
                    "Action: [kms:GetPublicKey]"
                ],
                "{id}: the retired keys are granted GetPublicKey only, and only when listed"
            );
        }
    }
    assert!(
        readers > 1,
        "no function reads the signing key: did the syntax change?"
    );
}

/// The signing key comes first in `KMS_KEY_ID`, the retired keys after it, and an empty
/// `RetiredSigningKeyArns` adds no empty entry (which the functions would refuse).
#[test]
fn kms_key_id_lists_the_signing_key_then_the_retired_keys() {
    let template = template();
    let active = "!If [SigningKeySlotB, !Ref SigningKeyB, !Ref SigningKey]";
    let expected = format!(
        "KMS_KEY_ID: !If\n          - KmsSigning\n          - !If\n            \
         - HasRetiredSigningKeys\n            \
         - !Join [\",\", [{active}, !Join [\",\", !Ref RetiredSigningKeyArns]]]\n            \
         - {active}\n          - !Ref AWS::NoValue\n"
    );
    assert!(template.contains(&expected), "KMS_KEY_ID is not {expected}");
    assert!(template.contains(
        "HasRetiredSigningKeys: !Not [!Equals [!Join [\"\", !Ref RetiredSigningKeyArns], \"\"]]"
    ));
}

/// A key leaving the stack at a rotation must outlive it: tokens it signed verify while it is
/// listed as retired.
#[test]
fn signing_keys_are_retained_when_they_leave_the_stack() {
    let template = template();
    for key in ["SigningKey", "SigningKeyB", "EnvelopeSigningKey"] {
        let start = template
            .find(&format!("\n  {key}:\n"))
            .unwrap_or_else(|| panic!("no {key}"));
        let resource: String = template[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(resource.contains("Type: AWS::KMS::Key"), "{key}");
        assert!(resource.contains("DeletionPolicy: Retain"), "{key}");
        assert!(resource.contains("UpdateReplacePolicy: Retain"), "{key}");
    }
}

/// In envelope mode (`SIGNING_KEY_ENVELOPE`) every function that reads signing keys decrypts the
/// signing key at cold start and reads the keys' items: `kms:Decrypt` on the envelope key only,
/// only for the purpose envelope keys are encrypted for, instead of (not beside) the KMS grants;
/// and `dynamodb:GetItem` on the table.
#[test]
fn in_envelope_mode_functions_may_decrypt_signing_keys_only_and_read_their_items() {
    let decrypt = [
        "- !If",
        "- EnvelopeSigning",
        "- Effect: Allow",
        "Action: [kms:Decrypt]",
        "Resource: !GetAtt EnvelopeSigningKey.Arn",
        "Condition:",
        "StringEquals:",
        "\"kms:EncryptionContext:purpose\": ciba-signing-key",
        "- Effect: Allow",
    ];
    let mut readers = 0;
    for (id, lines) in function_sections() {
        let trimmed: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
        let decrypts = trimmed.iter().filter(|l| l.contains("kms:Decrypt")).count();
        let Some(i) = trimmed.iter().position(|l| *l == ACTIVE_KEY_ARN) else {
            assert_eq!(
                decrypts, 0,
                "{id}: decrypts without reading the signing key"
            );
            continue;
        };
        readers += 1;
        assert_eq!(decrypts, 1, "{id}");
        assert_eq!(
            trimmed[i - 1 - decrypt.len()..i - 1],
            decrypt,
            "{id}: the envelope grant replaces the KMS one, for the signing-key purpose only"
        );
        let section = lines.join("\n");
        assert!(
            section.contains("Action: [dynamodb:GetItem")
                || section.contains(
                    "- EnvelopeSigning\n              - Effect: Allow\n                \
                     Action: [dynamodb:GetItem]\n                Resource: !GetAtt Table.Arn"
                ),
            "{id}: cannot read the envelope keys' items"
        );
    }
    assert!(readers > 1, "no function reads the signing key");
}

/// The environment names the keys of one mode only, and envelope mode cannot deploy without
/// its kids (nor with KMS settings it would ignore).
#[test]
fn signing_mode_chooses_the_settings_and_envelope_mode_needs_kids() {
    let template = template();
    assert!(template.contains(
        "SIGNING_KEY_ENVELOPE: !If [EnvelopeSigning, !Join [\",\", !Ref EnvelopeSigningKids], !Ref AWS::NoValue]\n"
    ));
    let mode = entry("Parameters", "SigningMode");
    assert!(has_line(&mode, "Default: kms"), "{mode}");
    assert!(has_line(&mode, "AllowedValues: [kms, envelope]"), "{mode}");
    assert!(has_line(
        &entry("Parameters", "EnvelopeSigningKids"),
        "Default: \"\""
    ));
    let rule = entry("Rules", "EnvelopeSigningNeedsKids");
    assert!(
        has_line(&rule, "RuleCondition: !Equals [!Ref SigningMode, envelope]"),
        "{rule}"
    );
    assert!(
        has_line(
            &rule,
            "- Assert: !Not [!Contains [!Ref EnvelopeSigningKids, \"\"]]"
        ),
        "{rule}"
    );
    let key = entry("Resources", "EnvelopeSigningKey");
    for line in [
        "Condition: HasEnvelopeKey",
        "KeySpec: SYMMETRIC_DEFAULT",
        "KeyUsage: ENCRYPT_DECRYPT",
        "EnableKeyRotation: true",
    ] {
        assert!(has_line(&key, line), "EnvelopeSigningKey: no {line}");
    }
    assert!(template.contains(
        "HasEnvelopeKey: !Or [!Condition EnvelopeSigning, !Equals [!Ref CreateEnvelopeKey, \"true\"]]"
    ));
}

/// What a policy statement's `Resource` names, by kind: how the signing key is named (one key, a
/// slot of two, the retired keys) is the key rotation's business, not a grant's.
fn resource_kind(resource: &str) -> &str {
    if resource.contains("SigningKey") {
        "signing keys"
    } else if resource.contains("Table.StreamArn") {
        "table stream"
    } else if resource.contains("Table.Arn") {
        "table"
    } else {
        resource
    }
}

/// The IAM actions each function's policies grant, by logical id (`TokenFunction`), with the
/// kind of resource each statement names.
fn granted_actions() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut granted = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    let mut function = None;
    let mut actions: Vec<String> = Vec::new();
    for line in template().lines() {
        let depth = line.len() - line.trim_start().len();
        if depth == 2 && line.trim_end().ends_with(':') {
            let id = line.trim().trim_end_matches(':');
            function = id.ends_with("Function").then(|| id.to_owned());
            actions.clear();
        } else if let Some(list) = value_of(line, "Action:") {
            actions = list
                .trim_matches(['[', ']'])
                .split(',')
                .map(|a| a.trim().to_owned())
                .collect();
        } else if let (Some(f), Some(resource)) = (&function, value_of(line, "Resource:")) {
            let entry = granted.entry(f.clone()).or_default();
            for action in actions.drain(..) {
                entry.insert(format!("{action} on {}", resource_kind(resource)));
            }
        }
    }
    granted
}

fn grants(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|g| (*g).to_owned()).collect()
}

/// Introspection reads tokens and authenticates its caller as `/token` does (a client
/// assertion's `jti` is written once); it may not sign, query, update or delete anything.
#[test]
fn introspect_is_granted_the_reads_of_client_authentication_and_tokens_only() {
    assert_eq!(
        granted_actions()["IntrospectFunction"],
        grants(&[
            "kms:GetPublicKey on signing keys",
            "kms:Decrypt on signing keys",
            "dynamodb:GetItem on table",
            "dynamodb:PutItem on table",
        ])
    );
}

/// Revocation marks families revoked and deletes access tokens besides what introspection
/// does; it may not sign, query or read the OP secret.
#[test]
fn revoke_is_granted_the_token_writes_of_revocation_only() {
    assert_eq!(
        granted_actions()["RevokeFunction"],
        grants(&[
            "kms:GetPublicKey on signing keys",
            "kms:Decrypt on signing keys",
            "dynamodb:GetItem on table",
            "dynamodb:PutItem on table",
            "dynamodb:UpdateItem on table",
            "dynamodb:DeleteItem on table",
        ])
    );
}

/// Least privilege names its actions and resources: a wildcard in a function's policy grants
/// what no review looked at.
#[test]
fn no_function_is_granted_a_wildcard_action() {
    let granted = granted_actions();
    assert!(granted.contains_key("TokenFunction"), "{granted:?}");
    for (function, grants) in granted {
        for grant in grants {
            let (action, _) = grant.split_once(" on ").unwrap();
            assert!(!action.contains('*'), "{function}: {grant}");
        }
    }
}

/// The lines of one entry (a parameter, rule, resource or output) of a top-level section of the
/// template, its own line excluded.
fn entry(section: &str, name: &str) -> String {
    let template = template();
    let start = template
        .find(&format!("\n{section}:\n"))
        .unwrap_or_else(|| panic!("no {section} in template.yaml"));
    let body: String = template[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n");
    let at = body
        .find(&format!("\n  {name}:\n"))
        .or_else(|| body.starts_with(&format!("  {name}:\n")).then_some(0))
        .unwrap_or_else(|| panic!("no {name} in {section}"));
    body[at..]
        .trim_start_matches('\n')
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_line(entry: &str, line: &str) -> bool {
    entry.lines().any(|l| l.trim() == line)
}

const MTLS_PARAMETERS: [&str; 4] = [
    "MtlsDomainName",
    "MtlsCertificateArn",
    "MtlsTruststoreUri",
    "MtlsTruststoreVersion",
];

/// RFC 8705 on AWS is opt-in: a deploy without the mutual TLS parameters is the deploy it was,
/// and the domain, certificate and truststore are checked for their form before anything is made.
#[test]
fn mutual_tls_parameters_are_optional_and_checked_for_their_form() {
    for name in MTLS_PARAMETERS {
        let parameter = entry("Parameters", name);
        assert!(
            has_line(&parameter, "Default: \"\""),
            "{name}: not optional"
        );
    }
    for (name, pattern) in [
        (
            "MtlsDomainName",
            r"AllowedPattern: '^$|^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$'",
        ),
        (
            "MtlsTruststoreUri",
            r"AllowedPattern: '^$|^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+$'",
        ),
    ] {
        assert!(has_line(&entry("Parameters", name), pattern), "{name}");
    }
    assert!(
        entry("Parameters", "MtlsTruststoreUri").contains("self_signed_tls_client_auth"),
        "the truststore's description must say a self-signed client certificate goes in it"
    );
}

/// Half a mutual TLS setup fails the deploy: a domain without its certificate or truststore
/// would refuse every handshake, a truststore without a domain would silently do nothing.
#[test]
fn mutual_tls_parameters_come_all_or_not_at_all() {
    let needs = entry("Rules", "MtlsDomainNeedsCertificateAndTruststore");
    assert!(has_line(
        &needs,
        "RuleCondition: !Not [!Equals [!Ref MtlsDomainName, \"\"]]"
    ));
    for required in ["MtlsCertificateArn", "MtlsTruststoreUri"] {
        assert!(
            has_line(
                &needs,
                &format!("- Assert: !Not [!Equals [!Ref {required}, \"\"]]")
            ),
            "a domain without {required} is not refused"
        );
    }
    let alone = entry("Rules", "MtlsSettingsNeedADomain");
    assert!(has_line(
        &alone,
        "RuleCondition: !Equals [!Ref MtlsDomainName, \"\"]"
    ));
    for setting in &MTLS_PARAMETERS[1..] {
        assert!(
            has_line(&alone, &format!("- !Equals [!Ref {setting}, \"\"]")),
            "{setting} without a domain is not refused"
        );
    }
}

/// API Gateway does mutual TLS on a custom domain only: the domain (the certificate, TLS 1.2,
/// the truststore) and its mapping to the API's one stage exist exactly when a domain is named.
/// Clients without a certificate keep the HTTP API's own URL: the domain is added beside the
/// execute-api endpoint, which is never disabled.
#[test]
fn the_mutual_tls_domain_is_mapped_beside_the_execute_api_endpoint_only_with_a_domain() {
    let template = template();
    assert!(!template.contains("DisableExecuteApiEndpoint"));
    assert!(template.contains("\n  HasMtlsDomain: !Not [!Equals [!Ref MtlsDomainName, \"\"]]\n"));
    let domain = entry("Resources", "MtlsDomain");
    for line in [
        "Type: AWS::ApiGatewayV2::DomainName",
        "Condition: HasMtlsDomain",
        "DomainName: !Ref MtlsDomainName",
        "- CertificateArn: !If [HasMtlsCertificate, !Ref MtlsCertificateArn, !Ref AWS::NoValue]",
        "EndpointType: REGIONAL",
        "SecurityPolicy: TLS_1_2",
        "TruststoreUri: !Ref MtlsTruststoreUri",
        "TruststoreVersion: !If [HasMtlsTruststoreVersion, !Ref MtlsTruststoreVersion, !Ref AWS::NoValue]",
    ] {
        assert!(has_line(&domain, line), "MtlsDomain lacks {line}");
    }
    let mapping = entry("Resources", "MtlsApiMapping");
    for line in [
        "Type: AWS::ApiGatewayV2::ApiMapping",
        "Condition: HasMtlsDomain",
        "DomainName: !Ref MtlsDomain",
        "ApiId: !Ref HttpApi",
        "Stage: !Ref HttpApi.Stage",
    ] {
        assert!(has_line(&mapping, line), "MtlsApiMapping lacks {line}");
    }
    for output in ["MtlsBaseUrl", "MtlsDomainTarget", "MtlsDomainHostedZoneId"] {
        assert!(
            has_line(&entry("Outputs", output), "Condition: HasMtlsDomain"),
            "{output}"
        );
    }
}

/// Discovery lists `mtls_endpoint_aliases` from `MTLS_BASE_URL`, so every function gets it from
/// the domain when there is one, and none gets it otherwise.
#[test]
fn mtls_base_url_is_the_custom_domain_when_there_is_one() {
    assert!(template().contains(
        "\n        MTLS_BASE_URL: !If [HasMtlsDomain, !Sub \"https://${MtlsDomainName}\", !Ref AWS::NoValue]\n"
    ));
    assert!(environment_variable_names().contains("MTLS_BASE_URL"));
}

/// The OP secret is read only where it is needed: by the functions that derive keys from it
/// always (bc-authorize, deliverer), and by token and userinfo only when DPoP nonces are
/// required (`DpopNonce`), which are authenticated with a key derived from it.
#[test]
fn token_and_userinfo_read_the_op_secret_only_when_dpop_nonces_are_required() {
    assert!(has_line(
        &entry("Parameters", "DpopNonce"),
        "AllowedValues: [\"off\", \"required\"]"
    ));
    assert!(has_line(
        &entry("Parameters", "DpopNonce"),
        "Default: \"off\""
    ));
    assert!(template().contains("  DpopNonceRequired: !Equals [!Ref DpopNonce, required]\n"));
    for (id, lines) in function_sections() {
        let text = lines.join("\n");
        let reads_secret = text.contains("OP_SECRET_ARN:");
        match id.as_str() {
            "TokenFunction" | "UserinfoFunction" => {
                assert!(
                    text.contains(
                        "OP_SECRET_ARN: !If [DpopNonceRequired, !Ref OpSecret, !Ref AWS::NoValue]"
                    ),
                    "{id}: the OP secret only with DPoP nonces"
                );
                let grant = text
                    .find("- DpopNonceRequired")
                    .map(|at| &text[at..])
                    .unwrap_or_default();
                assert!(
                    grant.contains("Action: [secretsmanager:GetSecretValue]"),
                    "{id}: GetSecretValue only with DPoP nonces"
                );
            }
            "BcAuthorizeFunction" | "DelivererFunction" => assert!(reads_secret, "{id}"),
            _ => assert!(!reads_secret, "{id} is given the OP secret"),
        }
    }
}
