//! `tollgate kubernetes ...`: the ingress controller's translation, offline.
use crate::config_cmd::Format;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_gateway::declarative::{self, export};
use tollgate_gateway::model::unix_now;
use tollgate_kubernetes::translate::{self, Options};

#[derive(Subcommand)]
pub enum KubernetesCommand {
    /// Print the decK file the ingress controller would build from manifests (Ingress, also
    /// networking.k8s.io/v1beta1; Services, EndpointSlices, Secrets, Kong's CRDs), for migration
    /// and review. What fails to translate is reported on standard error, with the object at
    /// fault, and makes the exit status 1; the rest is printed.
    Translate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
    },
}

/// Runs the command; `classes` are the ingress classes served (`TOLLGATE_INGRESS_CLASSES`).
pub fn run(cmd: KubernetesCommand, classes: Vec<String>) -> anyhow::Result<ExitCode> {
    let KubernetesCommand::Translate { files, format } = cmd;
    let mut texts = Vec::new();
    for f in &files {
        let text =
            declarative::read_file(f).with_context(|| format!("cannot read {}", f.display()))?;
        texts.push((f.display().to_string(), text));
    }
    let cluster = translate::read_manifests(&texts).map_err(|errors| {
        anyhow::anyhow!("cannot read the manifests:\n  {}", errors.join("\n  "))
    })?;
    let t = translate::translate(&cluster, &Options { classes }, unix_now());
    let text = match format {
        Format::Yaml => export::to_yaml(&t.document),
        Format::Json => serde_json::to_string_pretty(&t.document)? + "\n",
    };
    print!("{text}");
    for (object, messages) in translate::by_object(&t.failures) {
        for m in messages {
            eprintln!("{}: {m}", object.describe());
        }
    }
    Ok(if t.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
