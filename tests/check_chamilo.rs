//! `check-chamilo` against the stand-in: a healthy Chamilo passes every check, and each failure
//! the stand-in can produce is named by its own line with a fix, while the others are skipped
//! or still pass. The preflight writes nothing unless told to create the extra fields.

mod common;

use std::process::Command;

use chamilo_scim_proxy::app::preflight::{check_chamilo, names, Options, Report, Verdict};
use chamilo_scim_proxy::config::Config;
use chamilo_scim_proxy::standin::{
    Fault, FaultKind, NewUser, Standin, StandinConfig, StandinHandle,
};

/// The `[chamilo]` section for the stand-in's admin, with `extra` appended to it.
fn config_text(chamilo: &StandinHandle, extra: &str) -> String {
    format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nsecurity_key = \"{}\"\n{extra}",
        chamilo.base_url, chamilo.admin_api_key, chamilo.security_key
    )
}

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

async fn preflight(text: &str) -> Report {
    check_chamilo(&config(text), Options::default()).await
}

fn verdict(report: &Report, name: &str) -> Verdict {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no '{name}' line in:\n{report}"))
        .verdict
}

/// The one failed line is `name`, it carries a fix, and the report says provisioning will
/// not work.
fn only_failure(report: &Report, name: &str) {
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, [name], "{report}");
    assert!(report.check(name).unwrap().fix.is_some(), "{report}");
    assert!(!report.provisioning_will_work());
    assert!(
        report.to_string().contains(&format!("✗ {name}: ")),
        "{report}"
    );
}

async fn healthy_standin() -> StandinHandle {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 3,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    // A teacher and an inactive student, to be counted.
    chamilo
        .state()
        .insert_user(NewUser {
            username: "teacher1".into(),
            lastname: "T".into(),
            email: "t@example.org".into(),
            password: "Secret123".into(),
            status: 1,
            ..NewUser::default()
        })
        .unwrap();
    chamilo
}

#[tokio::test]
async fn a_healthy_chamilo_passes_every_check_and_nothing_is_written() {
    let chamilo = healthy_standin().await;
    let text = config_text(&chamilo, "");
    let users_before = chamilo.state().user_count();

    // Fields missing, created at start-up by default: a warning, not a failure.
    let report = preflight(&text).await;
    assert!(report.provisioning_will_work(), "{report}");
    assert_eq!(
        verdict(&report, names::EXTRA_FIELDS),
        Verdict::Warn,
        "{report}"
    );
    assert!(chamilo.state().extra_field("scim_user_name").is_none());
    assert_eq!(chamilo.calls("save_user"), 0);
    assert_eq!(chamilo.calls("delete_user"), 0);
    assert_eq!(chamilo.state().user_count(), users_before);
    // The language probes changed no one's language.
    let admin = chamilo
        .state()
        .user_by_username("admin")
        .unwrap()
        .language
        .clone();
    assert_eq!(admin, "english");
    assert!(chamilo.calls("update_user_from_username") > 0);

    // The flag creates them, as start-up does (placeholder deleted).
    let report = check_chamilo(
        &config(&text),
        Options {
            create_extra_fields: true,
        },
    )
    .await;
    assert_eq!(
        verdict(&report, names::EXTRA_FIELDS),
        Verdict::Pass,
        "{report}"
    );
    assert!(chamilo.state().extra_field("scim_user_name").is_some());
    assert_eq!(chamilo.state().user_count(), users_before);

    // Now every line is a ✓.
    let report = preflight(&text).await;
    for name in [
        names::SETTINGS,
        names::REACH,
        names::SERVICE_ACCOUNT,
        names::LATENCY,
        names::ADMIN,
        names::WEB_SERVICES,
        names::SOAP,
        names::ACCOUNTS,
        names::EXTRA_FIELDS,
        names::LANGUAGES,
        names::ROLES,
    ] {
        assert_eq!(verdict(&report, name), Verdict::Pass, "{name}:\n{report}");
    }
    let accounts = &report.check(names::ACCOUNTS).unwrap().detail;
    // admin is a teacher (status 1) in Chamilo, plus teacher1; 3 students; the anonymous user.
    assert!(accounts.starts_with("6 ("), "{accounts}");
    assert!(accounts.contains("3 students"), "{accounts}");
    assert!(accounts.contains("2 teachers"), "{accounts}");
    assert!(accounts.contains("1 anonymous"), "{accounts}");
    assert!(report
        .to_string()
        .ends_with("Chamilo is ready for provisioning.\n"));
}

#[tokio::test]
async fn a_wrong_api_key_is_named_and_the_rest_skipped() {
    let chamilo = healthy_standin().await;
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n",
        chamilo.base_url
    );
    let report = preflight(&text).await;
    only_failure(&report, names::SERVICE_ACCOUNT);
    assert_eq!(verdict(&report, names::REACH), Verdict::Pass);
    assert_eq!(verdict(&report, names::ADMIN), Verdict::Skipped);
    assert_eq!(verdict(&report, names::EXTRA_FIELDS), Verdict::Skipped);
}

#[tokio::test]
async fn a_wrong_password_is_named() {
    let chamilo = healthy_standin().await;
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\npassword = \"not-the-password\"\n",
        chamilo.base_url
    );
    let report = preflight(&text).await;
    only_failure(&report, names::SERVICE_ACCOUNT);

    // The right password works without an api key.
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\npassword = \"{}\"\nsecurity_key = \"{}\"\n",
        chamilo.base_url, chamilo.admin_password, chamilo.security_key
    );
    let report = preflight(&text).await;
    assert!(report.provisioning_will_work(), "{report}");
}

#[tokio::test]
async fn a_service_account_that_is_not_an_administrator_is_named() {
    let chamilo = healthy_standin().await;
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"teacher1\"\npassword = \"Secret123\"\n",
        chamilo.base_url
    );
    let report = preflight(&text).await;
    only_failure(&report, names::ADMIN);
    assert!(report
        .check(names::ADMIN)
        .unwrap()
        .fix
        .as_deref()
        .unwrap()
        .contains("Platform admin"));
    assert_eq!(verdict(&report, names::SERVICE_ACCOUNT), Verdict::Pass);
}

/// Chamilo 1.11.16 and older have no `users_profiles_by_extra_field` (`Invalid action`).
#[tokio::test]
async fn old_web_services_are_named_with_what_is_missing() {
    let chamilo = healthy_standin().await;
    chamilo.inject_fault(Fault::nth_of(
        "users_profiles_by_extra_field",
        1,
        FaultKind::Refuse {
            message: "Invalid action".into(),
        },
    ));
    let report = preflight(&config_text(&chamilo, "")).await;
    only_failure(&report, names::WEB_SERVICES);
    let line = report.check(names::WEB_SERVICES).unwrap();
    assert!(
        line.detail
            .contains("users_profiles_by_extra_field is missing"),
        "{report}"
    );
    assert!(line.fix.as_deref().unwrap().contains("1.11.28"), "{report}");
}

#[tokio::test]
async fn a_wrong_soap_secret_is_named_and_nothing_renamed() {
    let chamilo = healthy_standin().await;
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nsecurity_key = \"{}\"\n",
        chamilo.base_url, chamilo.admin_api_key, "0000000000000000deadbeefdeadbeef"
    );
    let report = preflight(&text).await;
    only_failure(&report, names::SOAP);
    assert!(report
        .check(names::SOAP)
        .unwrap()
        .detail
        .contains("SOAP secret refused"));

    // Without any secret: a warning (renames refused), not a failure.
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\n",
        chamilo.base_url, chamilo.admin_api_key
    );
    let report = preflight(&text).await;
    assert_eq!(verdict(&report, names::SOAP), Verdict::Warn, "{report}");
    assert!(report.provisioning_will_work(), "{report}");
}

#[tokio::test]
async fn missing_extra_fields_are_reported_not_created_when_creation_is_off() {
    let chamilo = healthy_standin().await;
    let report = preflight(&config_text(&chamilo, "create_extra_fields = false\n")).await;
    only_failure(&report, names::EXTRA_FIELDS);
    let line = report.check(names::EXTRA_FIELDS).unwrap();
    for field in ["scim_user_name", "scim_external_id", "scim_attributes"] {
        assert!(line.detail.contains(field), "{report}");
    }
    assert!(line
        .fix
        .as_deref()
        .unwrap()
        .contains("--create-extra-fields"));
    assert!(chamilo.state().extra_field("scim_user_name").is_none());
    assert_eq!(chamilo.calls("save_user"), 0);
}

#[tokio::test]
async fn unknown_languages_and_roles_are_named() {
    let chamilo = healthy_standin().await;
    let report = preflight(&config_text(
        &chamilo,
        "[chamilo.languages]\nen = \"english\"\ntlh = \"klingon\"\n[chamilo.roles]\nteacher = 1\nboss = 2\n",
    ))
    .await;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name)
        .collect();
    assert_eq!(failed, [names::LANGUAGES, names::ROLES], "{report}");
    let languages = &report.check(names::LANGUAGES).unwrap().detail;
    assert!(languages.contains("tlh → klingon"), "{report}");
    assert!(!languages.contains("english"), "{report}");
    assert!(report
        .check(names::ROLES)
        .unwrap()
        .detail
        .contains("boss → 2"));
    assert_eq!(
        chamilo.state().user_by_username("admin").unwrap().language,
        "english"
    );
}

#[tokio::test]
async fn a_default_language_chamilo_lacks_is_named() {
    let chamilo = healthy_standin().await;
    let report = preflight(&config_text(&chamilo, "default_language = \"klingon\"\n")).await;
    only_failure(&report, names::LANGUAGES);
    let line = report.check(names::LANGUAGES).unwrap();
    assert!(
        line.detail.contains("chamilo.default_language 'klingon'"),
        "{report}"
    );
    // With unmapped tags refused, the fallback is never given: nothing to check.
    let strict = preflight(&config_text(
        &chamilo,
        "default_language = \"klingon\"\nrefuse_unmapped_languages = true\n",
    ))
    .await;
    assert_eq!(
        verdict(&strict, names::LANGUAGES),
        Verdict::Pass,
        "{strict}"
    );
}

#[tokio::test]
async fn an_unreachable_chamilo_is_named() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[chamilo]\nurl = \"http://127.0.0.1:{port}\"\nusername = \"admin\"\napi_key = \"0123456789abcdef0123456789abcdef\"\n"
    );
    let report = preflight(&text).await;
    only_failure(&report, names::REACH);
    assert_eq!(verdict(&report, names::SERVICE_ACCOUNT), Verdict::Skipped);
    // The checks that need no call still run.
    assert_eq!(verdict(&report, names::ROLES), Verdict::Pass);
}

#[tokio::test]
async fn something_that_is_not_chamilo_is_named() {
    let chamilo = healthy_standin().await;
    chamilo.inject(Some(chamilo_scim_proxy::standin::Injected::HtmlErrorPage));
    let report = preflight(&config_text(&chamilo, "")).await;
    only_failure(&report, names::REACH);
    assert!(report
        .check(names::REACH)
        .unwrap()
        .detail
        .contains("not Chamilo's REST web services"));
}

// Multi-threaded: the stand-in keeps answering while this thread waits for the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_exits_non_zero_on_a_failure_and_never_prints_a_secret() {
    let chamilo = healthy_standin().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str, create: bool| {
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(common::BIN);
        cmd.arg("check-chamilo").arg("--config").arg(&path);
        if create {
            cmd.arg("--create-extra-fields");
        }
        let out = cmd
            .env_remove("SCIM_TOKEN")
            .env_remove("SCIM_TOKEN_FILE")
            .env_remove("CHAMILO_SCIM_PROXY_CONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let secrets = [
        chamilo.admin_api_key.clone(),
        chamilo.security_key.clone(),
        chamilo.admin_password.clone(),
    ];

    let (ok, out) = run(
        &config_text(&chamilo, "create_extra_fields = false\n"),
        false,
    );
    assert!(!ok, "{out}");
    assert!(out.contains("✗ extra fields:"), "{out}");
    assert!(out.contains("    fix: "), "{out}");

    let (ok, out) = run(&config_text(&chamilo, ""), true);
    assert!(ok, "{out}");
    assert!(out.contains("✓ SOAP secret:"), "{out}");
    assert!(out.contains("Chamilo is ready for provisioning."), "{out}");
    for secret in &secrets {
        assert!(!out.contains(secret.as_str()), "a secret in:\n{out}");
    }

    // A wrong SOAP secret and a wrong password are not echoed either.
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\npassword = \"wrong-password-4711\"\nsecurity_key = \"feedfacefeedfacefeedfacefeedface\"\n",
        chamilo.base_url
    );
    let (ok, out) = run(&text, false);
    assert!(!ok, "{out}");
    assert!(out.contains("✗ service account:"), "{out}");
    assert!(!out.contains("wrong-password-4711"), "{out}");
    assert!(!out.contains("feedfacefeedface"), "{out}");
}
