//! `tollgate config ...`: validate a declarative file, export the store as one, or apply one
//! to a running gateway through its admin API.
use crate::admin_client::AdminClient;
use crate::serve::open_store;
use crate::settings::{Database, Settings};
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tollgate_gateway::declarative::{self, export, sync};
use tollgate_gateway::model::{unix_now, Kind};
use tollgate_gateway::store::portal::Plan;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a declarative file (`-` reads standard input); prints each problem with its line.
    Validate { file: PathBuf },
    /// Print the stored configuration as a declarative file.
    Export {
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
    },
    /// Make a running gateway match a declarative file: creates, updates and deletes entities
    /// through its admin API, printing each change.
    Apply {
        file: PathBuf,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
        /// The admin API of the gateway to change.
        #[arg(
            long,
            env = "TOLLGATE_ADMIN_URL",
            default_value = "http://127.0.0.1:8001"
        )]
        admin_url: String,
    },
}

pub async fn run(cmd: ConfigCommand, s: &Settings) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate { file } => validate(&file),
        ConfigCommand::Export { format } => export_store(s, format).await,
        ConfigCommand::Apply {
            file,
            dry_run,
            admin_url,
        } => {
            apply(
                &file,
                dry_run,
                &AdminClient::new(&admin_url, s.admin_token.clone()),
            )
            .await
        }
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    declarative::read_file(file).with_context(|| format!("cannot read {}", file.display()))
}

fn load(file: &Path) -> Result<declarative::Config, ExitCode> {
    let text = read(file).map_err(|e| {
        eprintln!("tollgate: {e:#}");
        ExitCode::FAILURE
    })?;
    declarative::load(&text, unix_now()).map_err(|errors| {
        for d in &errors {
            eprintln!("{}: {d}", file.display());
        }
        eprintln!(
            "{}: {} problem(s); nothing was changed",
            file.display(),
            errors.len()
        );
        ExitCode::FAILURE
    })
}

fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let count = |k: Kind| config.records.iter().filter(|r| r.kind == k).count();
    println!(
        "{}: valid ({} services, {} routes, {} consumers, {} key-auth credentials, {} plugins, {} plans)",
        file.display(),
        count(Kind::Service),
        count(Kind::Route),
        count(Kind::Consumer),
        count(Kind::KeyAuth),
        count(Kind::Plugin),
        config.plans.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn export_store(s: &Settings, format: Format) -> anyhow::Result<ExitCode> {
    if s.database == Database::Off {
        bail!("there is no store to export in DB-less mode: the declarative file is the configuration");
    }
    let store = open_store(s).await?;
    let doc = export::document(&store.load_all().await?, &store.plans().await?);
    match format {
        Format::Yaml => print!("{}", export::to_yaml(&doc)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The writes that make the gateway's portal plans the file's (matched by name), each
/// printed: (operation, admin path, body).
fn plan_changes(current: &[Value], desired: &[Plan]) -> Vec<(sync::Op, String, Option<Value>)> {
    let mut out = Vec::new();
    for plan in desired {
        let body = json!({"name": plan.name, "limits": plan.limits, "services": plan.services});
        let found = current.iter().find(|c| c["name"] == plan.name.as_str());
        let op = match found {
            None => sync::Op::Create,
            Some(c) if c["limits"] != body["limits"] || c["services"] != body["services"] => {
                sync::Op::Update
            }
            Some(_) => continue,
        };
        let word = if op == sync::Op::Create {
            "create"
        } else {
            "update"
        };
        println!("{word} plan {}", plan.name);
        let key = found.and_then(|c| c["id"].as_str()).unwrap_or(&plan.id);
        out.push((op, format!("/plans/{key}"), Some(body)));
    }
    for c in current {
        let name = c["name"].as_str().unwrap_or_default();
        if !desired.iter().any(|p| p.name == name) {
            println!("delete plan {name}");
            let id = c["id"].as_str().unwrap_or_default();
            out.push((sync::Op::Delete, format!("/plans/{id}"), None));
        }
    }
    out
}

async fn apply(file: &Path, dry_run: bool, admin: &AdminClient) -> anyhow::Result<ExitCode> {
    let config = match load(file) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut current = Vec::new();
    for kind in Kind::ALL {
        for body in admin.list_all(kind.collection()).await? {
            current.push((kind, body));
        }
    }
    let plan = sync::plan(&current, &config.records);
    let mut counts = [0usize; 3];
    for change in &plan {
        println!("{}", change.describe());
        let path = format!("/{}/{}", change.kind.collection(), change.id);
        counts[change.op as usize] += 1;
        if dry_run {
            continue;
        }
        match change.op {
            sync::Op::Create | sync::Op::Update => {
                admin.call(Method::PUT, &path, Some(&change.body)).await?
            }
            sync::Op::Delete => admin.call(Method::DELETE, &path, None).await?,
        };
    }
    for (op, path, body) in plan_changes(&admin.list_all("plans").await?, &config.plans) {
        counts[op as usize] += 1;
        if dry_run {
            continue;
        }
        match op {
            sync::Op::Delete => admin.call(Method::DELETE, &path, None).await?,
            _ => admin.call(Method::PUT, &path, body.as_ref()).await?,
        };
    }
    let verb = if dry_run { "would be " } else { "" };
    println!(
        "Summary: {} {verb}created, {} {verb}updated, {} {verb}deleted",
        counts[0], counts[1], counts[2]
    );
    Ok(ExitCode::SUCCESS)
}
