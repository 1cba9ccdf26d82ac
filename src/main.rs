//! The `tollgate` command: runs the gateway, and manages declarative configuration.
mod admin_client;
mod config_cmd;
mod kubernetes_cmd;
mod serve;
mod settings;

use clap::{Parser, Subcommand};
use settings::Settings;

/// mimalloc: the request path allocates small, short-lived buffers; glibc malloc cost 10 % of
/// proxy CPU time in the benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An API gateway that speaks Kong's admin API and config formats"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Run,
    /// Validate, export or apply declarative (decK-format) configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Kubernetes: translate manifests offline as the ingress controller would.
    #[command(subcommand)]
    Kubernetes(kubernetes_cmd::KubernetesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Everything Tollgate writes (the SQLite store and its journal, the analytics store, the
    // spill file, the generated console password, file-log output) is its owner's alone:
    // sessions, hashed keys and request logs are nobody else's to read.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match serve::runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => serve::run(cli.settings).await,
            Command::Config(c) => config_cmd::run(c, &cli.settings).await,
            Command::Kubernetes(c) => kubernetes_cmd::run(c, cli.settings.ingress_classes.clone()),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("tollgate: {e:#}");
    std::process::ExitCode::FAILURE
}
