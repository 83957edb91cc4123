//! `chamilo-scim-proxy`: the command line.
//!
//! Subcommands are variants of [`Command`]; adding one is a variant plus a match arm.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use chamilo_scim_proxy::config::load::{load, EnvSecrets, Overrides, Source};

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
    let result = runtime.block_on(chamilo_scim_proxy::server::lifecycle::run(
        source,
        loaded,
        Some(log),
    ));
    // Do not wait for connections the grace period gave up on.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
