//! `sluice schemas check PATH…` and `sluice schemas push DIR`: schema files as code. A
//! directory holds one folder per tenant and one file per subject
//! (`<tenant>/<subject>.json` for JSON Schema, `<tenant>/<subject>.avsc` for Avro), the
//! layout `schemas.dir` loads at start.
//!
//! `check` parses every file offline with the registry's own checks and prints every problem
//! (exit 2 if any). `push` registers every file with a running sluice's registry (a schema key
//! of each tenant, or an admin key) and prints what became of each, with the registry's
//! reason for any refusal (an incompatible change names the rule it breaks); exit 2 if any
//! was refused.

use crate::UserError;
use crate::client::{Connection, locate};
use crate::config::ConfigArgs;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Value, json};
use sluice_api::registry::files::{self, SchemaFile};
use sluice_schema::SchemaType;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SchemasArgs {
    #[command(subcommand)]
    action: SchemasAction,
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// Check schema files (or directories of <tenant>/<subject>.json|.avsc) offline.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Register a directory of <tenant>/<subject>.json|.avsc files with a running sluice.
    Push {
        /// The directory.
        dir: PathBuf,
        /// sluice's base URL (default: http:// + the configured `server.listen`).
        #[arg(long)]
        url: Option<String>,
        /// A schema key of the tenants' (or an admin key).
        #[arg(long, env = "SLUICE_SCHEMA_KEY", hide_env_values = true)]
        key: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(args: SchemasArgs) -> anyhow::Result<()> {
    match args.action {
        SchemasAction::Check { paths, config } => check(&paths, &config),
        SchemasAction::Push {
            dir,
            url,
            key,
            config,
        } => push(&dir, url.as_deref(), &key, &config),
    }
}

/// The files a path names (itself, or the layout under a directory), and its problems.
fn files_of(path: &Path) -> (Vec<SchemaFile>, Vec<String>) {
    if path.is_dir() {
        return files::list(path);
    }
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => SchemaType::Json,
        Some("avsc") => SchemaType::Avro,
        _ => {
            let problem = format!(
                "{}: a schema file ends in .json (JSON Schema) or .avsc (Avro)",
                path.display()
            );
            return (Vec::new(), vec![problem]);
        }
    };
    let file = SchemaFile {
        path: path.to_path_buf(),
        tenant: String::new(),
        subject: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind,
    };
    (vec![file], Vec::new())
}

fn check(paths: &[PathBuf], config: &ConfigArgs) -> anyhow::Result<()> {
    let config = config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    let limit = config.schemas.max_schema_bytes.as_usize();
    let mut problems = Vec::new();
    let mut good = 0;
    for path in paths {
        let (found, layout) = files_of(path);
        problems.extend(layout);
        for file in found {
            let checked = std::fs::read_to_string(&file.path)
                .map_err(|error| error.to_string())
                .and_then(|text| {
                    sluice_schema::parse::parse(file.kind, &text, limit)
                        .map_err(|error| error.to_string())
                });
            match checked {
                Ok(_) => {
                    good += 1;
                    println!("ok      {} ({})", file.path.display(), file.kind);
                }
                Err(error) => problems.push(format!("{}: {error}", file.path.display())),
            }
        }
    }
    for problem in &problems {
        println!("invalid {problem}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(UserError(format!(
            "{} of {} schema files have problems",
            problems.len(),
            problems.len() + good
        ))
        .into())
    }
}

fn push(dir: &Path, url: Option<&str>, key: &str, config: &ConfigArgs) -> anyhow::Result<()> {
    let (_, target) = locate(config, url)?;
    let (found, problems) = files::list(dir);
    if !problems.is_empty() {
        return Err(UserError(problems.join("\n")).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let refused = runtime.block_on(async {
        let mut connection = Connection::open(&target).await?;
        let auth = format!("Bearer {key}");
        let mut refused = 0;
        for file in &found {
            let text = std::fs::read_to_string(&file.path)?;
            let path = format!(
                "/schemas/tenants/{}/subjects/{}/versions",
                file.tenant,
                path_segment(&file.subject)
            );
            let body = json!({"schema": text, "schemaType": file.kind.as_str()}).to_string();
            let reply = connection
                .send(
                    Method::POST,
                    &path,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/vnd.schemaregistry.v1+json"),
                    ],
                    Bytes::from(body),
                )
                .await?;
            let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            if reply.status.is_success() {
                println!(
                    "registered {}: {} {} version {} (id {})",
                    file.path.display(),
                    file.tenant,
                    file.subject,
                    answer["version"],
                    answer["id"]
                );
            } else {
                refused += 1;
                println!(
                    "refused    {}: {} {}",
                    file.path.display(),
                    reply.status,
                    answer["message"].as_str().unwrap_or("(no message)")
                );
            }
        }
        anyhow::Ok(refused)
    })?;
    if refused > 0 {
        return Err(UserError(format!(
            "{refused} of {} schema files were refused",
            found.len()
        ))
        .into());
    }
    Ok(())
}

/// A subject as one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
