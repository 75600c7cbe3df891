//! A whole sluice started in-process for the serving benchmarks: a temporary (or given) data
//! dir, a free port on 127.0.0.1, one tenant with fresh keys, and the benchmark's metrics.

use crate::UserError;
use crate::app::App;
use crate::client::Target;
use crate::first_start::generate_key;
use std::path::PathBuf;
use std::time::Duration;

/// The running server and how to reach it.
pub(crate) struct BenchServer {
    pub(crate) app: App,
    pub(crate) target: Target,
    pub(crate) write_key: String,
    pub(crate) read_key: String,
    _temp: Option<tempfile::TempDir>,
}

impl BenchServer {
    /// Starts sluice with `metrics` (SQL) on `data_dir` (default: a temporary directory),
    /// with `extra` config overrides.
    pub(crate) async fn start(
        name: &str,
        data_dir: Option<PathBuf>,
        metrics: &[&str],
        extra: &[(&str, toml::Value)],
    ) -> anyhow::Result<BenchServer> {
        let (temp, dir) = super::work_dir(data_dir.as_deref(), name)?;
        let write_key = generate_key("wk_");
        let read_key = generate_key("rk_");
        let mut tenant = toml::Table::new();
        tenant.insert("name".into(), "bench".into());
        tenant.insert("write-keys".into(), vec![write_key.clone()].into());
        tenant.insert("read-keys".into(), vec![read_key.clone()].into());
        let metrics: Vec<toml::Value> = metrics
            .iter()
            .map(|sql| {
                let mut table = toml::Table::new();
                table.insert("sql".into(), (*sql).into());
                toml::Value::Table(table)
            })
            .collect();
        let mut overrides = vec![
            ("data-dir", toml::Value::String(dir.display().to_string())),
            ("server.listen", toml::Value::String("127.0.0.1:0".into())),
            (
                "tenants",
                toml::Value::Array(vec![toml::Value::Table(tenant)]),
            ),
            ("metrics", toml::Value::Array(metrics)),
            // The benchmark's metrics only, also when it lists none.
            ("default-metrics", toml::Value::Boolean(false)),
        ];
        overrides.extend(extra.iter().cloned());
        let config = crate::config::load(None, &overrides)
            .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
        let app = App::start(&config).await?;
        let target = Target::parse(&format!("http://{}", app.addr))?;
        Ok(BenchServer {
            app,
            target,
            write_key,
            read_key,
            _temp: temp,
        })
    }

    /// Stops the server.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.app.stop(Duration::from_secs(10)).await
    }
}
