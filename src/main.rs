//! `chamilo-scim-proxy`: the command line.
//!
//! Subcommands are variants of [`Command`]; adding one is a variant plus a match arm.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use chamilo_scim_proxy::config::load::{load, EnvSecrets, Overrides, Source};
use chamilo_scim_proxy::standin::{Standin, StandinConfig};

/// SCIM 2.0 provisioning sidecar for Chamilo LMS: answers /scim/v2, passes everything else
/// through to Chamilo.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `run` is implied.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Run(RunArgs),
    /// Validate a configuration file and explain every error with its key and line.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Check a Chamilo before provisioning (and when provisioning fails): reachability, the
    /// service account, administrator rights, web-services version, SOAP secret, extra
    /// fields, accounts, latency, languages and roles. One line per check; exit status 0 only
    /// when provisioning will work. Read-only unless `--create-extra-fields`.
    CheckChamilo(CheckChamiloArgs),
    /// Try it out: start a SIMULATED Chamilo (the built-in stand-in) and the proxy in front of
    /// it, and print the SCIM base URL, a token and a `curl` to try.
    Demo(DemoArgs),
    /// Serve only a SIMULATED Chamilo (the built-in stand-in) on a loopback port, so the
    /// end-to-end suite can reach it the way it reaches a real Chamilo: by URL and credentials.
    /// Prints `CHAMILO_E2E_*` lines (and writes them to `--env-file` once listening); runs until
    /// SIGTERM or Ctrl-C.
    Standin(StandinArgs),
}

#[derive(Args, Debug, Clone)]
struct CheckChamiloArgs {
    /// The TOML configuration file the proxy runs with (secrets may also come from the
    /// environment, as for `run`).
    #[arg(long, short = 'c', env = "CHAMILO_SCIM_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Create the missing extra fields now, as the proxy does at start-up (the only write
    /// this command can make).
    #[arg(long)]
    create_extra_fields: bool,
}

#[derive(Args, Debug, Clone)]
struct StandinArgs {
    /// Write the `CHAMILO_E2E_*=value` lines here once the server listens (replaced atomically;
    /// load it with `set -a; . FILE; set +a`).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Accounts the simulated Chamilo starts with.
    #[arg(long, default_value_t = 0)]
    users: usize,
}

#[derive(Args, Debug, Clone)]
struct DemoArgs {
    /// Public listen address of the proxy.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin listen address (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Accounts the simulated Chamilo starts with.
    #[arg(long, default_value_t = 20)]
    users: usize,
}

#[derive(Args, Debug, Clone, Default)]
struct RunArgs {
    /// The TOML configuration file (optional: defaults plus environment work too).
    #[arg(long, short = 'c', env = "CHAMILO_SCIM_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Public listen address, overriding `server.listen`.
    #[arg(long, env = "LISTEN_ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listen address, overriding `admin.listen`.
    #[arg(long, env = "ADMIN_LISTEN_ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Upstream Chamilo base URL, overriding `upstream.url`.
    #[arg(long, env = "UPSTREAM_URL")]
    upstream: Option<String>,
}

impl RunArgs {
    fn source(&self) -> Source {
        Source {
            path: self.config.clone(),
            overrides: Overrides {
                listen: self.listen,
                admin_listen: self.admin_listen,
                upstream: self.upstream.clone(),
            },
            env: EnvSecrets::from_process_env(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::Run(args)) => run(args),
        Some(Command::CheckChamilo(args)) => check_chamilo(args),
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Standin(args)) => standin(args),
        None => run(cli.run),
    }
}

fn check_config(file: PathBuf) -> ExitCode {
    let source = Source {
        path: Some(file.clone()),
        overrides: Overrides::default(),
        env: EnvSecrets::from_process_env(),
    };
    match load(&source) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{}: warning: {warning}", file.display());
            }
            println!(
                "{}: OK ({} SCIM token(s), {} file(s) read)",
                file.display(),
                loaded.config.scim.tokens.len(),
                loaded.files.len()
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{}", failure.errors);
            eprintln!("{} error(s)", failure.errors.errors.len());
            ExitCode::from(1)
        }
    }
}

fn check_chamilo(args: CheckChamiloArgs) -> ExitCode {
    use chamilo_scim_proxy::app::preflight;
    let source = Source {
        path: args.config,
        overrides: Overrides::default(),
        env: EnvSecrets::from_process_env(),
    };
    let loaded = match load(&source) {
        Ok(l) => l,
        Err(failure) => {
            eprintln!("{}", failure.errors);
            eprintln!(
                "✗ configuration: fix the errors above (chamilo-scim-proxy check-config FILE)"
            );
            return ExitCode::from(1);
        }
    };
    let options = preflight::Options {
        create_extra_fields: args.create_extra_fields,
    };
    let mut ready = false;
    let outcome = block_on(async {
        let report = preflight::check_chamilo(&loaded.config, options).await;
        print!("{report}");
        ready = report.provisioning_will_work();
        Ok(())
    });
    if outcome == ExitCode::SUCCESS && ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(args: RunArgs) -> ExitCode {
    let source = args.source();
    let loaded = match load(&source) {
        Ok(l) => l,
        Err(failure) => {
            eprintln!("{}", failure.errors);
            return ExitCode::from(1);
        }
    };
    let log = match chamilo_scim_proxy::telemetry::init(&loaded.config.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    block_on(async move {
        chamilo_scim_proxy::app::run(source, loaded, Some(log))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start");
                e.to_string()
            })
    })
}

/// The README's "run" command: the stand-in and the proxy, one process.
fn demo(args: DemoArgs) -> ExitCode {
    block_on(async move {
        let standin = Standin::start(StandinConfig {
            seed_users: args.users,
            ..StandinConfig::default()
        })
        .await
        .map_err(|e| format!("cannot start the simulated Chamilo: {e}"))?;
        let token = hex::encode(rand::random::<[u8; 24]>());
        let dir =
            std::env::temp_dir().join(format!("chamilo-scim-proxy-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let file = dir.join("demo.toml");
        let text = format!(
            r#"# chamilo-scim-proxy demo, in front of a SIMULATED Chamilo (the built-in stand-in).
# Edit this file while the demo runs: changes apply live (see README, "Reloading").
[server]
listen = "{listen}"

[admin]
listen = "{admin}"

[upstream]
url = "{chamilo}"

[log]
format = "text"

[scim]
tokens = ["{token}"]

[chamilo]
username = "{user}"
api_key = "{key}"
security_key = "{security}"
"#,
            listen = args.listen,
            admin = args.admin_listen,
            chamilo = standin.base_url,
            user = standin.admin_username,
            key = standin.admin_api_key,
            security = standin.security_key,
        );
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let source = Source {
            path: Some(file.clone()),
            overrides: Overrides::default(),
            env: EnvSecrets::default(),
        };
        let loaded = load(&source).map_err(|failure| failure.errors.to_string())?;
        let base = format!("http://{}/scim/v2", args.listen);
        println!(
            "chamilo-scim-proxy demo: the proxy in front of a SIMULATED Chamilo (built-in stand-in, {users} accounts), not a real one.\n\n  SCIM base URL      {base}\n  Bearer token       {token}\n  Simulated Chamilo  {chamilo}\n  Admin port         http://{admin}/metrics\n  Configuration      {file} (edit it: changes apply live)\n\nTry:\n  curl -s -H 'Authorization: Bearer {token}' '{base}/Users?count=2'\n  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' \\\n       -d '{{\"userName\":\"ann@example.org\",\"name\":{{\"givenName\":\"Ann\",\"familyName\":\"Lee\"}},\"emails\":[{{\"value\":\"ann@example.org\",\"primary\":true}}]}}' '{base}/Users'\n\nCtrl-C stops it.\n",
            users = args.users,
            chamilo = standin.base_url,
            admin = args.admin_listen,
            file = file.display(),
        );
        let log =
            chamilo_scim_proxy::telemetry::init(&loaded.config.log).map_err(|e| e.to_string())?;
        let outcome = chamilo_scim_proxy::app::run(source, loaded, Some(log))
            .await
            .map_err(|e| e.to_string());
        standin.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    })
}

/// The stand-in alone, as a separate server: what `.ci/run` points the end-to-end suite at.
fn standin(args: StandinArgs) -> ExitCode {
    block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Signal handlers first: a SIGTERM right after the file appears must stop us cleanly.
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let standin = Standin::start(StandinConfig {
            seed_users: args.users,
            ..StandinConfig::default()
        })
        .await
        .map_err(|e| format!("cannot start the simulated Chamilo: {e}"))?;
        let lines = format!(
            "CHAMILO_E2E_URL={url}\nCHAMILO_E2E_USERNAME={user}\nCHAMILO_E2E_PASSWORD={password}\nCHAMILO_E2E_API_KEY={key}\nCHAMILO_E2E_SECURITY_KEY={security}\n",
            url = standin.base_url,
            user = standin.admin_username,
            password = standin.admin_password,
            key = standin.admin_api_key,
            security = standin.security_key,
        );
        if let Some(path) = &args.env_file {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            std::fs::write(&tmp, &lines)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        eprintln!(
            "chamilo-scim-proxy standin: a SIMULATED Chamilo (built-in stand-in, {} accounts) at {}; SIGTERM or Ctrl-C stops it.",
            args.users, standin.base_url
        );
        print!("{lines}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        standin.stop().await;
        Ok::<(), String>(())
    })
}

/// Runs `work` on a multi-threaded runtime and turns its outcome into the exit code (an error
/// is printed). Tasks still running at the end (connections the grace period gave up on) are
/// not waited for.
fn block_on(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(work);
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
