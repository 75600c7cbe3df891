//! Assembling the config tree: embedded defaults ← user file ← `SLUICE__…` environment ←
//! command-line overrides, then one pass that collects every problem.
//!
//! The embedded defaults double as the schema: a key the defaults do not have is unknown, and
//! an environment variable is typed by the default it overrides. serde stops at the first error
//! of a type, so problems inside a section are collected by repair: each value serde rejects is
//! recorded and replaced by its default, and deserialization runs again, until it succeeds.

use super::{ConfigProblem, ConfigProblems, Validate};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::{Table, Value};

/// An environment variable as `(name, value)`; only those starting with `SLUICE__` are used.
pub type EnvVar = (String, String);

/// The prefix of environment overrides: `SLUICE__SERVER__LISTEN` sets `server.listen`.
const ENV_PREFIX: &str = "SLUICE__";

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig<T> {
    /// The typed configuration.
    pub config: T,
    /// The merged tree it was built from (what `check-config` can print).
    pub tree: Table,
}

/// Builds `T` from the embedded `defaults`, an optional user file `(name, text)`, environment
/// variables and command-line `overrides` (dotted path → value), in that order of precedence.
/// Every problem is reported, each with its path.
pub fn load<T: DeserializeOwned + Validate>(
    defaults: &str,
    file: Option<(&str, &str)>,
    env: &[EnvVar],
    overrides: &[(&str, Value)],
) -> Result<LoadedConfig<T>, ConfigProblems> {
    let defaults: Table = toml::from_str(defaults).map_err(|error| {
        ConfigProblems(vec![ConfigProblem::new(
            "default.toml",
            format!("embedded defaults do not parse (a bug in sluice): {error}"),
        )])
    })?;
    let mut problems = Vec::new();
    let mut user = match file {
        Some((name, text)) => toml::from_str::<Table>(text).map_err(|error| {
            let message = error.message().to_owned();
            let at = error
                .span()
                .map(|span| {
                    let line = text[..span.start].matches('\n').count() + 1;
                    let column =
                        span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            ConfigProblems(vec![ConfigProblem::new(
                name,
                format!("not valid TOML{at}: {message}"),
            )])
        })?,
        None => Table::new(),
    };
    remove_unknown_keys(&mut user, &defaults, "", &mut problems);
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest
            .split("__")
            .map(|part| part.to_ascii_lowercase().replace('_', "-"))
            .collect();
        match lookup(&defaults, &path) {
            Some(default) => match typed_like(default, value) {
                Ok(typed) => insert(&mut user, &path, typed),
                Err(message) => problems.push(ConfigProblem::new(name.clone(), message)),
            },
            None => problems.push(ConfigProblem::new(
                name.clone(),
                format!(
                    "does not name a config key ({} is not in the configuration)",
                    path.join(".")
                ),
            )),
        }
    }
    for (path, value) in overrides {
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        insert(&mut user, &path, value.clone());
    }
    let mut tree = defaults.clone();
    merge(&mut tree, user);
    let config = deserialize_repairing::<T>(&mut tree, &defaults, &mut problems);
    if let Some(config) = &config {
        config.validate("", &mut problems);
    }
    match config {
        Some(config) if problems.is_empty() => Ok(LoadedConfig { config, tree }),
        _ => Err(ConfigProblems(problems)),
    }
}

/// Drops (and reports) the keys of `user` the defaults do not have. A table that is empty in
/// the defaults is open: its keys are the user's to choose (`[log.kafka.client]`'s librdkafka
/// settings), and the section's own type checks them.
fn remove_unknown_keys(
    user: &mut Table,
    defaults: &Table,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) {
    let keys: Vec<String> = user.keys().cloned().collect();
    for key in keys {
        let here = super::join(path, &key);
        match (defaults.get(&key), user.get_mut(&key)) {
            (None, _) => {
                let mut known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                known.sort_unstable();
                let place = if path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in [{path}]")
                };
                problems.push(ConfigProblem::new(
                    here,
                    format!("unknown key; the keys {place} are: {}", known.join(", ")),
                ));
                user.remove(&key);
            }
            (Some(Value::Table(default)), Some(Value::Table(_))) if default.is_empty() => {}
            (Some(Value::Table(default)), Some(Value::Table(value))) => {
                remove_unknown_keys(value, default, &here, problems);
            }
            (Some(Value::Table(_)), Some(_)) => {
                problems.push(ConfigProblem::new(
                    here,
                    "expected a table (a [section]) here",
                ));
                user.remove(&key);
            }
            _ => {}
        }
    }
}

fn lookup<'t>(table: &'t Table, path: &[String]) -> Option<&'t Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Table(inner) => lookup(inner, rest),
        _ => None,
    }
}

fn insert(table: &mut Table, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    if let Value::Table(inner) = entry {
        insert(inner, rest, value);
    }
}

/// Reads an environment variable's text as the TOML type of the default it overrides.
fn typed_like(default: &Value, text: &str) -> Result<Value, String> {
    match default {
        Value::String(_) => Ok(Value::String(text.to_owned())),
        Value::Integer(_) => text
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| format!("expected an integer, got {text:?}")),
        Value::Float(_) => text
            .trim()
            .parse()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got {text:?}")),
        Value::Boolean(_) => match text.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        Value::Array(_) | Value::Table(_) | Value::Datetime(_) => {
            let wrapped = format!("value = {text}");
            toml::from_str::<Table>(&wrapped)
                .ok()
                .and_then(|mut table| table.remove("value"))
                .ok_or_else(|| format!("expected a TOML value like [\"a\", \"b\"], got {text:?}"))
        }
    }
}

/// Deep merge: tables merge key by key, anything else in `over` replaces what is in `base`.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn deserialize_repairing<T: DeserializeOwned>(
    tree: &mut Table,
    defaults: &Table,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    // Each round fixes one value, so the number of rounds is bounded by the number of values.
    for _ in 0..256 {
        let error = match serde_path_to_error::deserialize::<_, T>(Value::Table(tree.clone())) {
            Ok(config) => return Some(config),
            Err(error) => error,
        };
        let segments: Vec<PathPart> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } => Some(PathPart::Key(key.clone())),
                Segment::Seq { index } => Some(PathPart::Index(*index)),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        problems.push(ConfigProblem::new(
            display_path(&segments),
            friendly(&error.inner().to_string()),
        ));
        if !repair(tree, defaults, &segments) {
            return None;
        }
    }
    None
}

#[derive(Debug, Clone)]
enum PathPart {
    Key(String),
    Index(usize),
}

fn display_path(parts: &[PathPart]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            PathPart::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            PathPart::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    if out.is_empty() {
        "(top level)".to_owned()
    } else {
        out
    }
}

/// Replaces the value at `parts` with its default; inside an array with no default items the
/// whole array falls back to its default. Returns false when nothing could be repaired.
fn repair(tree: &mut Table, defaults: &Table, parts: &[PathPart]) -> bool {
    let keys: Option<Vec<String>> = parts
        .iter()
        .map(|part| match part {
            PathPart::Key(key) => Some(key.clone()),
            PathPart::Index(_) => None,
        })
        .collect();
    if let Some(keys) = keys.filter(|keys| !keys.is_empty())
        && let Some(default) = lookup(defaults, &keys)
    {
        insert(tree, &keys, default.clone());
        return true;
    }
    let before_array: Vec<String> = parts
        .iter()
        .map_while(|part| match part {
            PathPart::Key(key) => Some(key.clone()),
            PathPart::Index(_) => None,
        })
        .collect();
    if before_array.len() < parts.len()
        && let Some(default) = lookup(defaults, &before_array)
    {
        insert(tree, &before_array, default.clone());
        return true;
    }
    false
}

/// serde's messages name Rust types; say what to write in TOML instead.
fn friendly(message: &str) -> String {
    message
        .replace("invalid type: ", "wrong type: found ")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected u16", "expected an integer from 0 to 65535")
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use serde::Deserialize;

    const DEFAULTS: &str = r#"
        data-dir = "./data"
        tenants = []
        [server]
        listen = "127.0.0.1:8080"
        workers = 2
        [limits]
        max-event-bytes = "32KiB"
        max-depth = 32
        mode = "fast"
    "#;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Config {
        data_dir: String,
        #[allow(dead_code)]
        tenants: Vec<Tenant>,
        server: Server,
        limits: Limits,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Tenant {
        #[allow(dead_code)]
        name: String,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Server {
        listen: String,
        workers: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Limits {
        max_event_bytes: ByteSize,
        max_depth: u32,
        #[allow(dead_code)]
        mode: Mode,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        Fast,
        Safe,
    }
    impl Validate for Config {
        fn validate(&self, _: &str, problems: &mut Vec<ConfigProblem>) {
            if self.limits.max_depth == 0 {
                problems.push(ConfigProblem::new("limits.max-depth", "must be at least 1"));
            }
        }
    }

    fn paths(result: Result<LoadedConfig<Config>, ConfigProblems>) -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|problem| problem.path)
            .collect()
    }

    #[test]
    fn defaults_alone_load() {
        let loaded = load::<Config>(DEFAULTS, None, &[], &[]).unwrap();
        assert_eq!(loaded.config.limits.max_event_bytes, ByteSize(32 * 1024));
        assert_eq!(loaded.config.server.workers, 2);
        assert_eq!(loaded.config.data_dir, "./data");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let file = r#"
            [server]
            lissten = "0.0.0.0:1"
            workers = "two"
            [limits]
            max-event-bytes = "lots"
            mode = "reckless"
            max-depth = 0
        "#;
        let problems = load::<Config>(DEFAULTS, Some(("bad.toml", file)), &[], &[]).unwrap_err();
        let text = problems.to_string();
        let mut paths: Vec<&str> = problems
            .0
            .iter()
            .map(|problem| problem.path.as_str())
            .collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "limits.max-depth",
                "limits.max-event-bytes",
                "limits.mode",
                "server.lissten",
                "server.workers"
            ],
            "{text}"
        );
        assert!(
            text.contains("the keys in [server] are: listen, workers"),
            "{text}"
        );
        assert!(text.contains("like 32KiB"), "{text}");
        assert!(text.contains("reckless"), "{text}");
    }

    #[test]
    fn environment_overrides_are_typed_by_the_default() {
        let env = vec![
            ("SLUICE__SERVER__WORKERS".to_owned(), "8".to_owned()),
            (
                "SLUICE__LIMITS__MAX_EVENT_BYTES".to_owned(),
                "64KiB".to_owned(),
            ),
            ("SLUICE__DATA_DIR".to_owned(), "/tmp/x".to_owned()),
            ("OTHER".to_owned(), "ignored".to_owned()),
        ];
        let loaded = load::<Config>(DEFAULTS, None, &env, &[]).unwrap();
        assert_eq!(loaded.config.server.workers, 8);
        assert_eq!(loaded.config.limits.max_event_bytes, ByteSize(64 * 1024));
        assert_eq!(loaded.config.data_dir, "/tmp/x");

        let env = vec![
            ("SLUICE__SERVER__WORKERS".to_owned(), "many".to_owned()),
            ("SLUICE__SERVER__NOPE".to_owned(), "1".to_owned()),
        ];
        let result = load::<Config>(DEFAULTS, None, &env, &[]);
        assert_eq!(
            paths(result),
            ["SLUICE__SERVER__WORKERS", "SLUICE__SERVER__NOPE"]
        );
    }

    #[test]
    fn file_then_env_then_overrides_take_precedence_in_order() {
        let file = "[server]\nlisten = \"file:1\"\nworkers = 3\n";
        let env = vec![("SLUICE__SERVER__LISTEN".to_owned(), "env:2".to_owned())];
        let overrides = [("server.listen", Value::String("flag:3".into()))];
        let loaded = load::<Config>(DEFAULTS, Some(("f", file)), &env, &overrides).unwrap();
        assert_eq!(loaded.config.server.listen, "flag:3");
        assert_eq!(loaded.config.server.workers, 3);
        let loaded = load::<Config>(DEFAULTS, Some(("f", file)), &env, &[]).unwrap();
        assert_eq!(loaded.config.server.listen, "env:2");
    }

    #[test]
    fn array_items_are_checked_and_syntax_errors_point_at_the_line() {
        let file = "[[tenants]]\nname = \"a\"\n[[tenants]]\nnmae = \"b\"\n";
        let result = load::<Config>(DEFAULTS, Some(("f", file)), &[], &[]);
        assert_eq!(paths(result), ["tenants[1].nmae"]);

        let problems =
            load::<Config>(DEFAULTS, Some(("broken.toml", "[server\nx=1")), &[], &[]).unwrap_err();
        assert_eq!(problems.0.len(), 1);
        assert!(problems.0[0].message.contains("line 1"), "{}", problems);
        assert_eq!(problems.0[0].path, "broken.toml");
    }
}
