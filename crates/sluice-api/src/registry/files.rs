//! `schemas.dir`: schema files registered at start, for teams that keep their schemas in git.
//!
//! The layout is one folder per tenant, one file per subject: `<dir>/<tenant>/<subject>.json`
//! (JSON Schema) or `<dir>/<tenant>/<subject>.avsc` (Avro), e.g.
//! `schemas/shop/Order Completed-value.json`. At start every file is registered as a version
//! of its subject, through the same checks as the API (a file already registered is left as
//! it is; an incompatible change is an error). Every problem is reported, and start fails.

use super::SchemaService;
use sluice_schema::SchemaType;
use std::path::{Path, PathBuf};

/// One schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// Where it is.
    pub path: PathBuf,
    /// The tenant (its folder).
    pub tenant: String,
    /// The subject (its name without the extension).
    pub subject: String,
    /// From the extension.
    pub kind: SchemaType,
}

/// The schema files under `dir`, sorted, and a problem for every entry that does not fit
/// the layout.
pub fn list(dir: &Path) -> (Vec<SchemaFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let tenants = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => return (files, vec![format!("{}: {error}", dir.display())]),
    };
    for tenant in tenants.flatten() {
        let tenant_path = tenant.path();
        let name = tenant.file_name().to_string_lossy().into_owned();
        if !tenant_path.is_dir() {
            problems.push(format!(
                "{}: expected a folder per tenant holding <subject>.json or <subject>.avsc files",
                tenant_path.display()
            ));
            continue;
        }
        if let Err(message) = sluice_core::tenant::check_tenant_name(&name) {
            problems.push(format!("{}: {message}", tenant_path.display()));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&tenant_path) else {
            problems.push(format!("{}: cannot be read", tenant_path.display()));
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => SchemaType::Json,
                Some("avsc") => SchemaType::Avro,
                _ => {
                    problems.push(format!(
                        "{}: a schema file ends in .json (JSON Schema) or .avsc (Avro)",
                        path.display()
                    ));
                    continue;
                }
            };
            let subject = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push(SchemaFile {
                path,
                tenant: name.clone(),
                subject,
                kind,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, problems)
}

/// Registers every file under `dir`; every problem, each naming its file.
pub async fn register_all(service: &SchemaService, dir: &Path) -> Result<usize, Vec<String>> {
    let (files, mut problems) = list(dir);
    let mut registered = 0;
    for file in &files {
        let text = match std::fs::read_to_string(&file.path) {
            Ok(text) => text,
            Err(error) => {
                problems.push(format!("{}: {error}", file.path.display()));
                continue;
            }
        };
        match service
            .register_for(&file.tenant, &file.subject, file.kind, &text)
            .await
        {
            Ok(_) => registered += 1,
            Err(error) => problems.push(format!("{}: {error}", file.path.display())),
        }
    }
    if problems.is_empty() {
        Ok(registered)
    } else {
        Err(problems)
    }
}
