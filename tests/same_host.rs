//! The same-host install (deploy/systemd, deploy/nginx): the snippets, run by a real nginx in
//! front of the real binary and the stand-in, send what the proxy expects.
//!
//! - (b) beside: only `/scim/v2/` reaches the proxy, the request line unchanged (an encoded
//!   filter), with the Host and scheme the identity provider used (`meta.location` and
//!   `Location` are `https://lms.example.org:PORT/scim/v2/…`); `/main/webservices/` answers
//!   only to this host.
//! - (a) in front: Chamilo on loopback sees the client's address (from the proxy's
//!   `X-Forwarded-For`) and `HTTPS=on` when the client used TLS to the proxy.
//! - The unit's commands run: `ExecStartPre` (check-config) accepts deploy/systemd/config.toml,
//!   and `systemd-analyze verify` accepts the unit where systemd-analyze exists.
//!
//! nginx is a Debian package (`apt-get install -y nginx`; `.ci/run` installs it); without it the
//! nginx tests say so and pass, except under `CI=true`, where they fail.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chamilo_scim_proxy::standin::{Standin, StandinConfig, StandinHandle};
use common::{ProxyProcess, BIN};

const HOST: &str = "lms.example.org";
const TOKEN: &str = "same-host-test-token-0123456789abcdef";

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The nginx binary, or `None` (with the reason printed) when it is not installed here.
fn nginx() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join("nginx");
        if path.is_file() {
            return Some(path);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nginx is not installed: .ci/run installs it (apt-get install -y nginx)"
    );
    eprintln!(
        "SKIPPED: nginx is not installed (apt-get install -y nginx); the snippet is not exercised"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An nginx master process, stopped (SIGTERM, then waited for) on drop.
struct Nginx(Child);

impl Nginx {
    /// Runs `server` (a snippet after substitution) inside a minimal main configuration.
    fn start(bin: &Path, dir: &Path, server: &str, port: u16) -> Self {
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        let site = dir.join("site.conf");
        std::fs::write(&site, server).unwrap();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 include {site};\n}}\n",
                site = site.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut nginx = Nginx(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.0.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}):\n{log}\n{server}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -s TERM {}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// `curl` with `args`; returns (status, headers + body). `from` picks the client's loopback
/// address (127.0.0.0/8 is all local), so an "outside" client can be played by 127.0.0.2.
fn curl(port: u16, from: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "-i", "--interface", from])
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn proxy_config(dir: &Path, chamilo: &StandinHandle, extra: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [upstream]\nurl = \"{url}\"\n[scim]\ntokens = [\"{TOKEN}\"]\n\
             [chamilo]\nusername = \"admin\"\napi_key = \"{key}\"\nsecurity_key = \"{security}\"\n{extra}",
            url = chamilo.base_url,
            key = chamilo.admin_api_key,
            security = chamilo.security_key,
        ),
    )
    .unwrap();
    path
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

async fn wait_scim_ready(proxy: &ProxyProcess) {
    let url = proxy.url("/scim/v2/Users?count=1");
    let ready = common::eventually(Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
                .arg(format!("Authorization: Bearer {TOKEN}"))
                .arg(&url)
                .output();
            matches!(out, Ok(o) if o.stdout == b"200")
        }
    })
    .await;
    assert!(ready, "{}", proxy.logs().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_beside_routes_only_scim_to_the_proxy_with_host_and_scheme() {
    let Some(nginx_bin) = nginx() else { return };
    let chamilo = Standin::start(StandinConfig {
        seed_users: 3,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The proxy as deploy/systemd/config.toml sets it up for (b): nginx on this host trusted.
    let config = proxy_config(
        dir.path(),
        &chamilo,
        "[forwarding]\ntrusted_networks = [\"127.0.0.1/32\", \"::1/128\"]\n",
    );
    let proxy = ProxyProcess::start(&config, &[]);
    wait_scim_ready(&proxy).await;

    let port = free_port();
    let (cert, key) = self_signed(dir.path());
    let chamilo_addr: SocketAddr = chamilo
        .base_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // "yours": Chamilo's PHP is the stand-in here.
    let php = dir.path().join("chamilo-php.conf");
    std::fs::write(&php, format!("proxy_pass http://{chamilo_addr};\n")).unwrap();
    let site = dir.path().join("chamilo-site.conf");
    std::fs::write(
        &site,
        format!("location / {{ proxy_pass http://{chamilo_addr}; }}\n"),
    )
    .unwrap();
    let server = repo("deploy/nginx/beside.conf")
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "/etc/ssl/lms.example.org/fullchain.pem",
            &cert.display().to_string(),
        )
        .replace(
            "/etc/ssl/lms.example.org/privkey.pem",
            &key.display().to_string(),
        )
        .replace("http://127.0.0.1:8080", &format!("http://{}", proxy.public))
        .replace(
            "/etc/nginx/snippets/chamilo-php.conf",
            &php.display().to_string(),
        )
        .replace(
            "/etc/nginx/snippets/chamilo-site.conf",
            &site.display().to_string(),
        );
    let _nginx = Nginx::start(&nginx_bin, dir.path(), &server, port);
    let base = format!("https://{HOST}:{port}/scim/v2");
    let auth = format!("Authorization: Bearer {TOKEN}");

    // An encoded filter reaches the proxy unchanged, with the IdP's Host and scheme.
    let (status, text) = curl(
        port,
        "127.0.0.2",
        &[
            "-H",
            &auth,
            &format!("{base}/Users?filter=userName%20eq%20%22user000001%22"),
        ],
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"totalResults\":1"), "{text}");
    assert!(
        text.contains(&format!("\"location\":\"{base}/Users/")),
        "meta.location must be the public https URL:\n{text}"
    );

    // A create answers with a Location under the public URL.
    let (status, text) = curl(
        port,
        "127.0.0.2",
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: application/scim+json",
            "--data",
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ann@example.org","name":{"givenName":"Ann","familyName":"Lee"},"emails":[{"value":"ann@example.org","primary":true}]}"#,
            &format!("{base}/Users"),
        ],
    );
    assert_eq!(status, 201, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("location: {base}/users/").to_ascii_lowercase()),
        "{text}"
    );

    // `/scim/v2` without the slash is redirected, not served by Chamilo.
    let (status, text) = curl(port, "127.0.0.2", &[&base]);
    assert_eq!(status, 308, "{text}");

    // Chamilo's own web services: refused to an outside client, served to this host.
    let webservices = format!("https://{HOST}:{port}/main/webservices/api/v2.php");
    let (status, _) = curl(
        port,
        "127.0.0.2",
        &["--data", "action=username_exist", &webservices],
    );
    assert_eq!(status, 403);
    let (status, text) = curl(
        port,
        "127.0.0.1",
        &["--data", "action=username_exist", &webservices],
    );
    // It reached Chamilo (the stand-in answers a call without a key as PHP does: a fatal).
    assert_ne!(status, 403, "{text}");
    assert!(text.contains("x-powered-by: PHP"), "{text}");
    // Without a token, SCIM is the proxy's 401, never Chamilo.
    let (status, text) = curl(port, "127.0.0.2", &[&format!("{base}/Users")]);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_placement_gives_chamilo_the_client_address_and_https() {
    let Some(nginx_bin) = nginx() else { return };
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // "yours": in place of Chamilo's PHP, a page that shows what PHP would be given.
    let site = dir.path().join("chamilo-site.conf");
    std::fs::write(
        &site,
        "location / { return 200 \"remote_addr=$remote_addr https=$chamilo_https\\n\"; }\n",
    )
    .unwrap();
    let server = repo("deploy/nginx/in-front.conf")
        .replace(
            "listen 127.0.0.1:8081;",
            &format!("listen 127.0.0.1:{port};"),
        )
        .replace(
            "/etc/nginx/snippets/chamilo-site.conf",
            &site.display().to_string(),
        );
    let _nginx = Nginx::start(&nginx_bin, dir.path(), &server, port);

    // The proxy as the (a) lines of deploy/systemd/config.toml: TLS itself, nothing trusted,
    // Chamilo's loopback site as upstream; web-service calls still go to the stand-in.
    let (cert, key) = self_signed(dir.path());
    let config = proxy_config(
        dir.path(),
        &chamilo,
        &format!("url = \"{}\"\n", chamilo.base_url),
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("[upstream]\nurl = \"{}\"", chamilo.base_url),
        &format!(
            "[upstream]\nurl = \"http://127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let proxy = ProxyProcess::start(&config, &[]);

    let url = format!("https://{HOST}:{}/index.php", proxy.public.port());
    // A client's own X-Forwarded-For is replaced by the proxy (it trusts no one here).
    let (status, text) = curl(
        proxy.public.port(),
        "127.0.0.2",
        &["-H", "X-Forwarded-For: 203.0.113.9", &url],
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("remote_addr=127.0.0.2 https=on"), "{text}");
}

/// The unit's commands run as written: `ExecStartPre` accepts the same-host configuration
/// (its secret files in place), and systemd accepts the unit.
#[test]
fn the_systemd_unit_runs_its_commands_on_the_same_host_configuration() {
    let unit = repo("deploy/systemd/chamilo-scim-proxy.service");
    let dir = tempfile::tempdir().unwrap();
    let etc = format!("{}/", dir.path().display());
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    for secret in ["scim-token", "chamilo-api-key", "chamilo-security-key"] {
        std::fs::write(
            dir.path().join("secrets").join(secret),
            "0123456789abcdef0123456789abcdef",
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("config.toml"),
        repo("deploy/systemd/config.toml").replace("/etc/chamilo-scim-proxy/", &etc),
    )
    .unwrap();
    let line = |key: &str| -> Vec<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
            .replace("/etc/chamilo-scim-proxy/", &etc)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let pre = line("ExecStartPre");
    assert_eq!(pre[0], "/usr/local/bin/chamilo-scim-proxy");
    let out = Command::new(BIN)
        .args(&pre[1..])
        .env_remove("SCIM_TOKEN")
        .env_remove("SCIM_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ExecStart is `run --config` on the same file (the same arguments as the image's CMD).
    let start = line("ExecStart");
    assert_eq!(start[1..3], ["run".to_owned(), "--config".to_owned()]);
    assert_eq!(start[3], pre[2]);

    let Ok(analyze) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed; the unit is not verified");
        return;
    };
    assert!(analyze.status.success());
    let bin_dir = tempfile::tempdir().unwrap();
    let unit_path = bin_dir.path().join("chamilo-scim-proxy.service");
    std::fs::write(
        &unit_path,
        unit.replace("/usr/local/bin/chamilo-scim-proxy", BIN),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only lines about our unit count (the host's other units may have their own issues).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chamilo-scim-proxy.service"))
        .collect();
    assert!(ours.is_empty() && out.status.success(), "{text}");
}

/// The Apache binary, or `None` (with the reason printed) when it is not installed here.
fn apache() -> Option<PathBuf> {
    let path = Path::new("/usr/sbin/apache2");
    if path.is_file() && Path::new("/usr/lib/apache2/modules/mod_proxy.so").is_file() {
        return Some(path.to_owned());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Apache is not installed: .ci/run installs it (apt-get install -y apache2)"
    );
    eprintln!("SKIPPED: Apache is not installed (apt-get install -y apache2); the snippet is not exercised");
    None
}

/// An Apache (`-DFOREGROUND`), stopped on drop.
struct Apache(Child);

impl Apache {
    fn start(bin: &Path, dir: &Path, site: &str, port: u16) -> Self {
        let d = dir.display();
        let modules = [
            ("mpm_event", "mod_mpm_event"),
            ("authz_core", "mod_authz_core"),
            ("authz_host", "mod_authz_host"),
            ("alias", "mod_alias"),
            ("headers", "mod_headers"),
            ("proxy", "mod_proxy"),
            ("proxy_http", "mod_proxy_http"),
            ("socache_shmcb", "mod_socache_shmcb"),
            ("ssl", "mod_ssl"),
            ("remoteip", "mod_remoteip"),
            ("setenvif", "mod_setenvif"),
        ]
        .iter()
        .map(|(name, file)| {
            format!("LoadModule {name}_module /usr/lib/apache2/modules/{file}.so\n")
        })
        .collect::<String>();
        let conf = dir.join("httpd.conf");
        std::fs::write(
            &conf,
            format!(
                "{modules}ServerRoot {d}\nServerName localhost\nListen 127.0.0.1:{port}\nPidFile {d}/httpd.pid\n\
                 DefaultRuntimeDir {d}\nMutex file:{d} default\nErrorLog {d}/error_log\nLogLevel warn\n\
                 User nobody\nGroup nogroup\n{site}\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-DFOREGROUND", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut apache = Apache(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = apache.0.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join("error_log")).unwrap_or_default();
                let mut stderr = String::new();
                if let Some(mut e) = apache.0.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                panic!("apache exited ({status}):\n{stderr}\n{log}\n{site}");
            }
            assert!(Instant::now() < deadline, "apache did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        apache
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -s TERM {}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_beside_routes_only_scim_to_the_proxy_with_host_and_scheme() {
    let Some(apache_bin) = apache() else { return };
    let chamilo = Standin::start(StandinConfig {
        seed_users: 3,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(
        dir.path(),
        &chamilo,
        "[forwarding]\ntrusted_networks = [\"127.0.0.1/32\", \"::1/128\"]\n",
    );
    let proxy = ProxyProcess::start(&config, &[]);
    wait_scim_ready(&proxy).await;

    let port = free_port();
    let (cert, key) = self_signed(dir.path());
    let docroot = dir.path().join("chamilo");
    std::fs::create_dir_all(&docroot).unwrap();
    let site = repo("deploy/apache/beside.conf")
        .replace(
            "<VirtualHost *:443>",
            &format!("<VirtualHost 127.0.0.1:{port}>"),
        )
        .replace(
            "/etc/ssl/lms.example.org/fullchain.pem",
            &cert.display().to_string(),
        )
        .replace(
            "/etc/ssl/lms.example.org/privkey.pem",
            &key.display().to_string(),
        )
        .replace("/var/www/chamilo", &docroot.display().to_string())
        .replace("http://127.0.0.1:8080", &format!("http://{}", proxy.public));
    let _apache = Apache::start(&apache_bin, dir.path(), &site, port);
    // Apache passes the Host as sent (ProxyPreserveHost), port included.
    let base = format!("https://{HOST}:{port}/scim/v2");
    let auth = format!("Authorization: Bearer {TOKEN}");

    let (status, text) = curl(
        port,
        "127.0.0.2",
        &[
            "-H",
            &auth,
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            &format!("{base}/Users?filter=userName%20eq%20%22user000001%22"),
        ],
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"totalResults\":1"), "{text}");
    assert!(
        text.contains(&format!("\"location\":\"{base}/Users/")),
        "meta.location must be the public https URL:\n{text}"
    );
    let (status, text) = curl(port, "127.0.0.2", &[&format!("{base}/Users")]);
    assert_eq!(status, 401, "{text}");

    // Chamilo's own web services: refused to an outside client, served to this host (the
    // empty document root answers 404 there: it was not refused).
    let webservices = format!("https://{HOST}:{port}/main/webservices/api/v2.php");
    let (status, _) = curl(port, "127.0.0.2", &[&webservices]);
    assert_eq!(status, 403);
    let (status, _) = curl(port, "127.0.0.1", &[&webservices]);
    assert_eq!(status, 404);
    let (status, _) = curl(port, "127.0.0.2", &[&base]);
    assert_eq!(status, 308);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_in_front_placement_gives_chamilo_the_client_address_and_https() {
    let Some(apache_bin) = apache() else { return };
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let docroot = dir.path().join("chamilo");
    std::fs::create_dir_all(&docroot).unwrap();
    std::fs::write(docroot.join("index.html"), "chamilo\n").unwrap();
    // In place of Chamilo's PHP, a header showing what PHP would be given (REMOTE_ADDR as
    // mod_remoteip sets it, the HTTPS variable).
    let site = repo("deploy/apache/in-front.conf")
        .replace("Listen 127.0.0.1:8081\n", "")
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{port}"))
        .replace("/var/www/chamilo", &docroot.display().to_string())
        + "Header always set X-Seen \"expr=remote_addr=%{REMOTE_ADDR} https=%{reqenv:HTTPS}\"\n";
    let _apache = Apache::start(&apache_bin, dir.path(), &site, port);

    let (cert, key) = self_signed(dir.path());
    let config = proxy_config(
        dir.path(),
        &chamilo,
        &format!("url = \"{}\"\n", chamilo.base_url),
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("[upstream]\nurl = \"{}\"", chamilo.base_url),
        &format!(
            "[upstream]\nurl = \"http://127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let proxy = ProxyProcess::start(&config, &[]);
    let url = format!("https://{HOST}:{}/index.html", proxy.public.port());
    let (status, text) = curl(
        proxy.public.port(),
        "127.0.0.2",
        &["-H", "X-Forwarded-For: 203.0.113.9", &url],
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-seen: remote_addr=127.0.0.2 https=on"),
        "{text}"
    );
}
