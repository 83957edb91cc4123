//! The effective SCIM token list and each token's name for the audit trail, from every
//! source: `scim.tokens`, `scim.token_files`, `scim.named_tokens`, `SCIM_TOKEN`,
//! `SCIM_TOKEN_FILE`. Tested through loading (`load.rs`).

use super::error::{ConfigError, Document};
use super::load::EnvSecrets;
use super::secret::SecretReader;
use super::Config;
use crate::secret::Secret;

/// Builds the effective token list and its names (for the audit trail): `scim.tokens`
/// (`tokens[0]`, `tokens[1]`…), then `scim.token_files` (each file's stem), then
/// `scim.named_tokens` (their `name`), then `SCIM_TOKEN` (`env`), then `SCIM_TOKEN_FILE`
/// (its stem). Names tell tokens apart in the audit trail, so they are unique: a
/// `named_tokens` name already taken is refused; a file stem already taken gets its key
/// appended (`entra@token_files[1]`).
pub(super) fn resolve_tokens(
    config: &mut Config,
    env: &EnvSecrets,
    reader: &mut SecretReader,
    doc: &Document<'_>,
    errors: &mut Vec<ConfigError>,
) {
    let mut effective = Vec::new();
    let mut names = Vec::new();
    // Per name: its source's key, and whether the configuration chose it (a named token).
    let mut origins: Vec<(String, bool)> = Vec::new();
    for (i, token) in config.scim.tokens.iter().enumerate() {
        match Secret::checked(token.expose()) {
            Ok(t) => {
                effective.push(t);
                names.push(format!("tokens[{i}]"));
                origins.push((format!("tokens[{i}]"), false));
            }
            Err(e) => errors.push(doc.error_at(&format!("scim.tokens[{i}]"), e.to_string())),
        }
    }
    for (i, path) in config.scim.token_files.iter().enumerate() {
        match reader.secret(path) {
            Ok(t) => {
                effective.push(t);
                names.push(file_token_name(path, &format!("token_files[{i}]")));
                origins.push((format!("token_files[{i}]"), false));
            }
            Err(e) => errors.push(doc.error_at(
                &format!("scim.token_files[{i}]"),
                format!("{}: {e}", path.display()),
            )),
        }
    }
    for (i, named) in config.scim.named_tokens.iter().enumerate() {
        let key = format!("scim.named_tokens[{i}]");
        let name = named.name.trim();
        let token = match (&named.token, &named.token_file) {
            _ if name.is_empty() => Err("name must not be empty".to_owned()),
            (Some(t), None) => Secret::checked(t.expose()).map_err(|e| e.to_string()),
            (None, Some(path)) => reader
                .secret(path)
                .map_err(|e| format!("{}: {e}", path.display())),
            _ => Err("give exactly one of token and token_file".to_owned()),
        };
        match token {
            Ok(t) => {
                effective.push(t);
                names.push(name.to_owned());
                origins.push((key, true));
            }
            Err(message) => errors.push(doc.error_at(&key, message)),
        }
    }
    if let Some(raw) = &env.scim_token {
        match Secret::checked(raw) {
            Ok(t) => {
                effective.push(t);
                names.push("env".to_owned());
                origins.push(("SCIM_TOKEN".to_owned(), false));
            }
            Err(e) => errors.push(ConfigError {
                key: Some("SCIM_TOKEN (environment)".to_owned()),
                position: None,
                message: e.to_string(),
            }),
        }
    }
    if let Some(path) = &env.scim_token_file {
        match reader.secret(path) {
            Ok(t) => {
                effective.push(t);
                names.push(file_token_name(path, "env-file"));
                origins.push(("SCIM_TOKEN_FILE".to_owned(), false));
            }
            Err(e) => errors.push(ConfigError {
                key: Some("SCIM_TOKEN_FILE (environment)".to_owned()),
                position: None,
                message: format!("{}: {e}", path.display()),
            }),
        }
    }
    for (i, (key, explicit)) in origins.iter().enumerate() {
        let Some(first) = names[..i].iter().position(|n| *n == names[i]) else {
            continue;
        };
        if *explicit {
            errors.push(doc.error_at(
                key,
                format!(
                    "name '{}' is already the name of {} in the audit trail; give each token its own name",
                    names[i], origins[first].0
                ),
            ));
        } else {
            names[i] = format!("{}@{key}", names[i]);
        }
    }
    config.scim.tokens = effective;
    config.scim.token_names = names;
}

/// A token file's name in the audit trail: its stem (`/run/secrets/entra.token` → `entra`),
/// else `fallback`.
fn file_token_name(path: &std::path::Path, fallback: &str) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map_or_else(|| fallback.to_owned(), str::to_owned)
}
