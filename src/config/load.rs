//! Loading: file + bootstrap overrides + environment secrets → a validated, prepared
//! configuration, or every error with its key and line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors, Document};
use super::secret::SecretReader;
use super::tls::TlsMaterial;
use super::tokens::resolve_tokens;
use super::Config;

/// Bootstrap settings given on the command line or in the environment; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `LISTEN_ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen` / `ADMIN_LISTEN_ADDR`.
    pub admin_listen: Option<SocketAddr>,
    /// `--upstream` / `UPSTREAM_URL`.
    pub upstream: Option<String>,
}

/// Secrets from the environment, read once at start (a process's environment never changes;
/// the *file* named by `SCIM_TOKEN_FILE` is re-read on every reload).
#[derive(Clone, Default)]
pub struct EnvSecrets {
    /// `SCIM_TOKEN`, kept raw so that an empty value is reported instead of ignored.
    pub scim_token: Option<String>,
    /// `SCIM_TOKEN_FILE`.
    pub scim_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for EnvSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSecrets")
            .field(
                "scim_token",
                &self.scim_token.as_ref().map(|_| "<redacted>"),
            )
            .field("scim_token_file", &self.scim_token_file)
            .finish()
    }
}

impl EnvSecrets {
    /// Reads `SCIM_TOKEN` and `SCIM_TOKEN_FILE` from the process environment.
    pub fn from_process_env() -> Self {
        Self {
            scim_token: std::env::var("SCIM_TOKEN").ok(),
            scim_token_file: std::env::var_os("SCIM_TOKEN_FILE").map(PathBuf::from),
        }
    }
}

/// Everything a load reads from: the file path (if any), the overrides, the environment.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
    pub env: EnvSecrets,
}

/// A configuration that passed validation, with what was prepared from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration: `scim.tokens` holds every token from every source.
    pub config: Config,
    /// The certificate and key when `server.tls` is set.
    pub tls: Option<Arc<TlsMaterial>>,
    /// Hash of the configuration text and of every file it refers to.
    pub fingerprint: [u8; 32],
    /// Every file read (the configuration, token files, certificate, key).
    pub files: Vec<PathBuf>,
    /// Legal but probably unintended settings (e.g. SCIM on without any token).
    pub warnings: Vec<ConfigError>,
}

/// A load that failed; the fingerprint and files let the reloader watch for the fix.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub errors: ConfigErrors,
    pub fingerprint: [u8; 32],
    pub files: Vec<PathBuf>,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.errors.fmt(f)
    }
}

impl std::error::Error for LoadFailure {}

/// Reads and validates the configuration described by `source`.
pub fn load(source: &Source) -> Result<Loaded, LoadFailure> {
    let mut reader = SecretReader::default();
    let mut errors = Vec::new();
    let text = match &source.path {
        Some(path) => match reader.read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                // Every setting has a default, so an empty file would load as "no tokens,
                // upstream 127.0.0.1:80": it is a file being written, or a mistake.
                Ok(text) if text.trim().is_empty() => {
                    errors.push(plain_error(
                        "the file is empty (being written?); a configuration file must set at least one key",
                    ));
                    String::new()
                }
                Ok(text) => text,
                Err(_) => {
                    errors.push(plain_error("the file is not valid UTF-8"));
                    String::new()
                }
            },
            Err(e) => {
                errors.push(plain_error(format!("cannot read the file: {e}")));
                String::new()
            }
        },
        None => String::new(),
    };
    let outcome = if errors.is_empty() {
        parse_and_prepare(&text, source, &mut reader)
    } else {
        Err(errors)
    };
    // Overrides and environment are fixed for the process, but mixing them keeps the
    // fingerprint honest if a caller builds a new `Source`.
    reader.mix(format!("{:?}", source.overrides).as_bytes());
    let (files, fingerprint) = reader.finish();
    match outcome {
        Ok((config, tls, warnings)) => Ok(Loaded {
            config,
            tls,
            warnings,
            fingerprint,
            files,
        }),
        Err(errors) => Err(LoadFailure {
            errors: ConfigErrors {
                file: source.path.clone(),
                errors,
            },
            fingerprint,
            files,
        }),
    }
}

fn plain_error(message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: None,
        position: None,
        message: message.into(),
    }
}

type Prepared = (Config, Option<Arc<TlsMaterial>>, Vec<ConfigError>);

fn parse_and_prepare(
    text: &str,
    source: &Source,
    reader: &mut SecretReader,
) -> Result<Prepared, Vec<ConfigError>> {
    let doc = Document::parse(text);
    let mut config: Config = toml::from_str(text).map_err(|e| vec![doc.toml_error(&e)])?;
    apply_overrides(&mut config, &source.overrides);
    let mut errors = Vec::new();
    resolve_tokens(&mut config, &source.env, reader, &doc, &mut errors);
    resolve_chamilo_secrets(&mut config, reader, &doc, &mut errors);
    validate(&config, &source.overrides, &doc, &mut errors);
    let warnings = warnings(&config, &doc, &errors);
    let tls = prepare_tls(&config, reader, &doc, &mut errors);
    if errors.is_empty() {
        Ok((config, tls, warnings))
    } else {
        Err(errors)
    }
}

fn apply_overrides(config: &mut Config, overrides: &Overrides) {
    if let Some(listen) = overrides.listen {
        config.server.listen = listen;
    }
    if let Some(listen) = overrides.admin_listen {
        config.admin.listen = listen;
    }
    if let Some(url) = &overrides.upstream {
        config.upstream.url = url.clone();
    }
}

/// Reads the Chamilo secrets given as files (`chamilo.*_file`) into their inline keys, through
/// `reader` so that the files are watched and a rotation reloads them like the SCIM tokens.
/// The `*_file` keys are cleared afterwards: the inline values are the effective ones.
fn resolve_chamilo_secrets(
    config: &mut Config,
    reader: &mut SecretReader,
    doc: &Document<'_>,
    errors: &mut Vec<ConfigError>,
) {
    let c = &mut config.chamilo;
    for (name, file, value) in [
        ("chamilo.api_key_file", &mut c.api_key_file, &mut c.api_key),
        (
            "chamilo.password_file",
            &mut c.password_file,
            &mut c.password,
        ),
        (
            "chamilo.security_key_file",
            &mut c.security_key_file,
            &mut c.security_key,
        ),
    ] {
        if let Some(path) = file.take() {
            match reader.secret(&path) {
                Ok(secret) => *value = Some(secret),
                Err(e) => errors.push(doc.error_at(name, format!("{}: {e}", path.display()))),
            }
        }
    }
}

fn validate(
    config: &Config,
    overrides: &Overrides,
    doc: &Document<'_>,
    errors: &mut Vec<ConfigError>,
) {
    let upstream_key = if overrides.upstream.is_some() {
        "upstream.url (from --upstream / UPSTREAM_URL)"
    } else {
        "upstream.url"
    };
    if let Err(message) = check_upstream_url(&config.upstream.url) {
        errors.push(doc.error_at(upstream_key, message));
    }
    if let Some(base) = &config.scim.base_url {
        if let Err(message) = check_upstream_url(base) {
            errors.push(doc.error_at("scim.base_url", message));
        } else if !base.trim_end_matches('/').ends_with("/scim/v2") {
            errors.push(doc.error_at(
                "scim.base_url",
                "must end with /scim/v2, the path the proxy serves SCIM at (e.g. https://lms.example.org/scim/v2)",
            ));
        }
    }

    let positive: [(&str, Duration); 11] = [
        (
            "server.header_read_timeout",
            config.server.header_read_timeout,
        ),
        (
            "server.tls_handshake_timeout",
            config.server.tls_handshake_timeout,
        ),
        ("upstream.connect_timeout", config.upstream.connect_timeout),
        (
            "upstream.response_header_timeout",
            config.upstream.response_header_timeout,
        ),
        (
            "upstream.body_idle_timeout",
            config.upstream.body_idle_timeout,
        ),
        (
            "upstream.tunnel_idle_timeout",
            config.upstream.tunnel_idle_timeout,
        ),
        (
            "upstream.pool_idle_timeout",
            config.upstream.pool_idle_timeout,
        ),
        ("shutdown.grace_period", config.shutdown.grace_period),
        ("reload.poll_interval", config.reload.poll_interval),
        ("reload.debounce", config.reload.debounce),
        ("scim.body_read_timeout", config.scim.body_read_timeout),
    ];
    for (key, value) in positive {
        if value.is_zero() {
            errors.push(doc.error_at(key, "must be greater than zero"));
        }
    }

    let limits: [(&str, usize, usize); 5] = [
        ("server.max_connections", config.server.max_connections, 1),
        ("scim.max_body_bytes", config.scim.max_body_bytes, 1024),
        ("scim.max_filter_length", config.scim.max_filter_length, 16),
        ("scim.max_results", config.scim.max_results, 1),
        ("scim.default_count", config.scim.default_count, 1),
    ];
    for (key, value, min) in limits {
        if value < min {
            errors.push(doc.error_at(key, format!("must be at least {min} (is {value})")));
        }
    }
    if config.scim.default_count > config.scim.max_results {
        errors.push(doc.error_at(
            "scim.default_count",
            format!(
                "must not exceed scim.max_results ({} > {})",
                config.scim.default_count, config.scim.max_results
            ),
        ));
    }
    for (i, rule) in config.access.rules.iter().enumerate() {
        if !rule.path_prefix.starts_with('/') {
            errors.push(doc.error_at(
                &format!("access.rules[{i}].path_prefix"),
                "must start with '/'",
            ));
        }
    }

    super::enrolment::validate(&config.chamilo, doc, errors);
    // A Chamilo language folder (`english`, `brazilian`, `simpl_chinese`): Chamilo refuses any
    // other on update, and the fallback would then fail every user with an unmapped tag.
    let folder = &config.chamilo.default_language;
    if folder.is_empty()
        || !folder
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        errors.push(doc.error_at(
            "chamilo.default_language",
            "must be a Chamilo language folder name (lower-case letters, digits, '_')",
        ));
    }

    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log.level) {
        errors.push(doc.error_at("log.level", format!("not a valid level or filter: {e}")));
    }

    if config.server.listen == config.admin.listen && config.server.listen.port() != 0 {
        errors.push(doc.error_at(
            "admin.listen",
            "must differ from server.listen (the admin port is never the proxied one)",
        ));
    }
}

/// Settings that are valid but leave something switched off by accident.
fn warnings(config: &Config, doc: &Document<'_>, errors: &[ConfigError]) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    // Fail closed rather than refuse to start: the pass-through works, and every SCIM request
    // is refused until a token is configured.
    if config.scim.enabled && config.scim.tokens.is_empty() && !has_token_errors(errors) {
        warnings.push(doc.error_at(
            "scim.enabled",
            "SCIM is enabled but no token is configured, so every SCIM request will be refused: \
             set scim.tokens, scim.token_files, SCIM_TOKEN or SCIM_TOKEN_FILE (or scim.enabled = false)",
        ));
    }
    warnings
}

fn has_token_errors(errors: &[ConfigError]) -> bool {
    errors.iter().any(|e| {
        e.key.as_deref().is_some_and(|k| {
            k.contains("TOKEN") || k.starts_with("scim.token") || k.starts_with("scim.named_tokens")
        })
    })
}

/// The upstream must be an absolute `http`/`https` URL with a host and no query.
pub fn check_upstream_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => return Err(format!("scheme must be http or https, not {other:?}")),
        None => return Err("must be an absolute URL such as http://127.0.0.1:80".to_owned()),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => return Err("has no host".to_owned()),
    }
    if uri.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    Ok(())
}

fn prepare_tls(
    config: &Config,
    reader: &mut SecretReader,
    doc: &Document<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<TlsMaterial>> {
    let tls = config.server.tls.as_ref()?;
    let cert = read_pem(reader, &tls.cert_file, "server.tls.cert_file", doc, errors);
    let key = read_pem(reader, &tls.key_file, "server.tls.key_file", doc, errors);
    let (cert, key) = (cert?, key?);
    match TlsMaterial::from_pem(&cert, &key) {
        Ok(material) => Some(Arc::new(material)),
        Err(e) => {
            let key_name = match e {
                super::tls::TlsMaterialError::Certificate(_) => "server.tls.cert_file",
                _ => "server.tls.key_file",
            };
            errors.push(doc.error_at(key_name, e.to_string()));
            None
        }
    }
}

fn read_pem(
    reader: &mut SecretReader,
    path: &Path,
    key: &str,
    doc: &Document<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<u8>> {
    match reader.read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            errors.push(doc.error_at(key, format!("cannot read {}: {e}", path.display())));
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn load_text(text: &str, env: EnvSecrets) -> Result<Loaded, LoadFailure> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        load(&Source {
            path: Some(path),
            overrides: Overrides::default(),
            env,
        })
    }

    pub(crate) fn with_token() -> EnvSecrets {
        EnvSecrets {
            scim_token: Some("t0k3n".to_owned()),
            scim_token_file: None,
        }
    }

    #[test]
    fn no_file_gives_defaults_plus_env() {
        let loaded = load(&Source {
            env: with_token(),
            ..Source::default()
        })
        .unwrap();
        assert_eq!(loaded.config.scim.tokens.len(), 1);
        assert_eq!(loaded.config.server.listen.port(), 8080);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[upstream]\nurl = \"http://a:1\"\n").unwrap();
        let loaded = load(&Source {
            path: Some(path),
            overrides: Overrides {
                upstream: Some("http://b:2".to_owned()),
                listen: Some("127.0.0.1:7".parse().unwrap()),
                admin_listen: None,
            },
            env: with_token(),
        })
        .unwrap();
        assert_eq!(loaded.config.upstream.url, "http://b:2");
        assert_eq!(loaded.config.server.listen.port(), 7);
    }

    #[test]
    fn tokens_from_every_source_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let f1 = dir.path().join("t1");
        let f2 = dir.path().join("t2");
        std::fs::write(&f1, "from-file\n").unwrap();
        std::fs::write(&f2, "from-env-file\n").unwrap();
        let text = format!(
            "[scim]\ntokens = [\"inline\"]\ntoken_files = [{:?}]\n",
            f1.display().to_string()
        );
        let loaded = load_text(
            &text,
            EnvSecrets {
                scim_token: Some("from-env".to_owned()),
                scim_token_file: Some(f2),
            },
        )
        .unwrap();
        let tokens: Vec<_> = loaded
            .config
            .scim
            .tokens
            .iter()
            .map(|t| t.expose())
            .collect();
        assert_eq!(tokens, ["inline", "from-file", "from-env", "from-env-file"]);
        // Names for the audit trail: the position of an inline token, a file's stem.
        assert_eq!(
            loaded.config.scim.token_names,
            ["tokens[0]", "t1", "env", "t2"]
        );
    }

    #[test]
    fn named_tokens_carry_their_name_and_need_exactly_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("okta-secret");
        std::fs::write(&file, "okta-token-value\n").unwrap();
        let text = format!(
            "[[scim.named_tokens]]\nname = \"entra\"\ntoken = \"entra-token-value\"\n\n\
             [[scim.named_tokens]]\nname = \"okta\"\ntoken_file = {:?}\n",
            file.display().to_string()
        );
        let loaded = load_text(&text, EnvSecrets::default()).unwrap();
        let scim = &loaded.config.scim;
        let tokens: Vec<_> = scim.tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["entra-token-value", "okta-token-value"]);
        assert_eq!(scim.token_names, ["entra", "okta"]);
        for bad in [
            "[[scim.named_tokens]]\nname = \"x\"\n",
            "[[scim.named_tokens]]\nname = \" \"\ntoken = \"abc\"\n",
            "[[scim.named_tokens]]\nname = \"x\"\ntoken = \"abc\"\ntoken_file = \"/t\"\n",
        ] {
            let err = load_text(bad, EnvSecrets::default()).unwrap_err();
            assert!(
                err.to_string().contains("scim.named_tokens[0]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn token_names_tell_tokens_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (fa, fb) = (a.join("entra.token"), b.join("entra.token"));
        std::fs::write(&fa, "token-a\n").unwrap();
        std::fs::write(&fb, "token-b\n").unwrap();
        // Two files with one stem: the second is told apart by its key.
        let text = format!(
            "[scim]\ntoken_files = [{:?}, {:?}]\n",
            fa.display().to_string(),
            fb.display().to_string()
        );
        let loaded = load_text(&text, EnvSecrets::default()).unwrap();
        assert_eq!(
            loaded.config.scim.token_names,
            ["entra", "entra@token_files[1]"]
        );
        // A chosen name that is taken is refused, naming both.
        let text = format!(
            "[scim]\ntoken_files = [{:?}]\n\n[[scim.named_tokens]]\nname = \"entra\"\ntoken = \"other\"\n",
            fa.display().to_string()
        );
        let err = load_text(&text, EnvSecrets::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scim.named_tokens[0]") && err.contains("token_files[0]"),
            "{err}"
        );
        let twice = "[[scim.named_tokens]]\nname = \"okta\"\ntoken = \"one\"\n\n[[scim.named_tokens]]\nname = \"okta\"\ntoken = \"two\"\n";
        let err = load_text(twice, EnvSecrets::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("scim.named_tokens[1]"), "{err}");
        assert!(
            !err.contains("one") && !err.contains("two"),
            "no secret: {err}"
        );
    }

    #[test]
    fn chamilo_secret_files_become_the_effective_values_and_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("api-key");
        std::fs::write(&key, "k3y\n").unwrap();
        let text = format!(
            "[chamilo]\napi_key = \"inline\"\napi_key_file = {:?}\n",
            key.display().to_string()
        );
        let loaded = load_text(&text, with_token()).unwrap();
        let c = &loaded.config.chamilo;
        assert_eq!(c.api_key.as_ref().map(|s| s.expose()), Some("k3y"));
        assert!(c.api_key_file.is_none());
        assert!(
            loaded.files.iter().any(|f| f.ends_with("api-key")),
            "{:?}",
            loaded.files
        );

        let text = "[chamilo]\npassword_file = \"/nonexistent/pw\"\n";
        let err = load_text(text, with_token()).unwrap_err();
        let e = &err.errors.errors[0];
        assert_eq!(e.key.as_deref(), Some("chamilo.password_file"));
        assert_eq!(e.position.map(|p| p.0), Some(2));
    }

    #[test]
    fn errors_name_key_and_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[forwarding]\ntrusted_networks = [\"10.0.0.0/8\", \"10.0.0.300/8\"]\n";
        let err = load_text(text, with_token()).unwrap_err();
        let e = &err.errors.errors[0];
        assert_eq!(e.key.as_deref(), Some("forwarding.trusted_networks[1]"));
        assert_eq!(e.position.map(|p| p.0), Some(5));
    }

    #[test]
    fn unknown_key_is_reported_with_line() {
        let err = load_text(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            with_token(),
        )
        .unwrap_err();
        let e = &err.errors.errors[0];
        assert_eq!(e.position.map(|p| p.0), Some(3));
        assert!(e.message.contains("lisen"), "{e}");
    }

    #[test]
    fn semantic_errors_are_all_collected_with_keys() {
        let text = "[upstream]\nurl = \"ftp://x\"\n\n[scim]\ntokens = [\"  \"]\ntoken_files = [\"/nonexistent/token\"]\n\n[server]\nmax_connections = 0\ntls = { cert_file = \"/nonexistent/c.pem\", key_file = \"/nonexistent/k.pem\" }\n\n[shutdown]\ngrace_period = \"0s\"\n";
        let err = load_text(text, EnvSecrets::default()).unwrap_err();
        let keys: Vec<_> = err
            .errors
            .errors
            .iter()
            .map(|e| (e.key.clone().unwrap_or_default(), e.position.map(|p| p.0)))
            .collect();
        for (key, line) in [
            ("upstream.url", Some(2)),
            ("scim.tokens[0]", Some(5)),
            ("scim.token_files[0]", Some(6)),
            ("server.max_connections", Some(9)),
            ("server.tls.cert_file", Some(10)),
            ("server.tls.key_file", Some(10)),
            ("shutdown.grace_period", Some(13)),
        ] {
            assert!(
                keys.contains(&(key.to_owned(), line)),
                "missing {key} at {line:?} in {keys:?}"
            );
        }
    }

    #[test]
    fn enabled_scim_without_a_token_is_a_warning() {
        let loaded = load_text("[log]\nlevel = \"info\"\n", EnvSecrets::default()).unwrap();
        assert_eq!(loaded.warnings[0].key.as_deref(), Some("scim.enabled"));
        let loaded = load_text("[scim]\nenabled = false\n", EnvSecrets::default()).unwrap();
        assert!(loaded.warnings.is_empty());
        assert!(load_text("[log]\nlevel = \"info\"\n", with_token())
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn upstream_url_checks() {
        assert!(check_upstream_url("http://127.0.0.1:80").is_ok());
        assert!(check_upstream_url("https://chamilo.internal").is_ok());
        assert!(check_upstream_url("127.0.0.1:80").is_err());
        assert!(check_upstream_url("http://x/?a=b").is_err());
        assert!(check_upstream_url("not a url").is_err());
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        let err = load_text("[scim]\ntokens = [\"abc def\"]\n", EnvSecrets::default()).unwrap_err();
        assert!(!err.to_string().contains("abc def"));
    }

    /// Issue 11 §2: a secret given with the wrong type was quoted by the type error.
    #[test]
    fn secret_values_of_the_wrong_type_are_not_quoted() {
        for (text, key) in [
            ("[scim]\ntokens = \"s3cret-token-value\"\n", "scim.tokens"),
            (
                "[scim]\ntokens = [\"good-token-0123456789abcdef\", 9876543210]\n",
                "scim.tokens[1]",
            ),
            ("[chamilo]\napi_key = 9876543210\n", "chamilo.api_key"),
            (
                "[chamilo]\npassword = [\"s3cret-token-value\"]\n",
                "chamilo.password",
            ),
            (
                "[chamilo]\nsecurity_key = { a = \"s3cret-token-value\" }\n",
                "chamilo.security_key",
            ),
        ] {
            let err = load_text(text, EnvSecrets::default()).unwrap_err();
            let shown = err.to_string();
            // An inline table has no key span to point at; the others name their key.
            assert!(
                shown.contains(key) || key == "chamilo.security_key",
                "{shown}"
            );
            assert!(
                !shown.contains("s3cret-token-value") && !shown.contains("9876543210"),
                "{text} gave {shown}"
            );
        }
        // Other keys keep the value: it is what tells the operator what is wrong.
        let err = load_text("[server]\nworkers = \"many\"\n", EnvSecrets::default()).unwrap_err();
        assert!(err.to_string().contains("\"many\""), "{err}");
    }
}
