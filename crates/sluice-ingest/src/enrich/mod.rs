//! Enrichment: what the collector adds to an event's `context` before the event is stored,
//! so every metric, stream and export sees it (`GROUP BY context.geo.country`). Each step is a
//! function of the event and the request alone, so it happens once, at the edge, and the log
//! holds the enriched event: replays and backfills see exactly what live processing saw.
//!
//! The steps, in order (each configurable in `[enrichment]`, and per tenant in
//! `[enrichment.tenants.<name>]`):
//! 1. **Request address** (`request-ip`): an event without `context.ip` gets the address the
//!    request came from (the TCP peer, or the first address of `client-ip-header` behind a
//!    proxy). Server-side libraries forward their visitor's address in `context.ip` instead.
//! 2. **Place** (`geoip-database`, `geo`): `context.ip` looked up in a MaxMind-format
//!    database gives `context.geo` (see [`geo::GeoDatabase::lookup`]). A new edition of the
//!    file is taken within a minute, without a restart ([`geo::GeoSource::reload`]).
//! 3. **Address policy** (`ip`): `keep`, `truncate` (IPv4 to its /24, IPv6 to its /48) or
//!    `drop` `context.ip`, after the lookup and before anything is stored: with `truncate` or
//!    `drop`, no full address reaches the log, the dead letters of enriched events or a
//!    result. A `context.ip` that is not an address is dropped by `truncate` too.
//! 4. **User agent** (`user-agent`): `context.userAgent` gives `context.browser`,
//!    `context.os` and `context.device` (see [`agent::Agent`]).
//! 5. **Campaign** (`campaign`): the UTM parameters of `context.page.search`, else of
//!    `context.page.url`, give `context.campaign` (`source`, `medium`, `name`, `term`,
//!    `content`: the object analytics.js writes).
//! 6. **Referrer class** (`referrer`): `context.page.referrer` gives `context.referrer`
//!    (`type`: campaign, direct, internal, search, social, email or referral; `name`; `host`).
//!
//! **What the client sent wins.** A step that would add an object the context already has
//! (`context.os` from a mobile SDK, `context.campaign` from analytics.js) leaves it as it is;
//! enrichment only ever adds objects, and changes nothing but `context.ip` under a policy.

pub mod agent;
pub mod campaign;
pub mod geo;

use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_core::config::{ConfigProblem, Validate, join};
use sluice_core::event::Event;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How often the geo database file is checked for a new edition.
pub const GEO_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// What happens to `context.ip` before an event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpPolicy {
    /// Stored as sent.
    Keep,
    /// IPv4 to its /24, IPv6 to its /48.
    Truncate,
    /// Removed.
    Drop,
}

/// The `[enrichment]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EnrichConfig {
    /// Browser, OS and device from `context.userAgent`.
    pub user_agent: bool,
    /// `context.campaign` from the page's UTM parameters.
    pub campaign: bool,
    /// `context.referrer` from the page's referrer.
    pub referrer: bool,
    /// `context.geo` from `context.ip`, when a database is given.
    pub geo: bool,
    /// A MaxMind-format database file; empty: no `context.geo`.
    pub geoip_database: PathBuf,
    /// What happens to `context.ip`.
    pub ip: IpPolicy,
    /// Whether an event without `context.ip` gets the request's address.
    pub request_ip: bool,
    /// Behind a proxy: the header naming the client's address (its first address counts).
    pub client_ip_header: String,
    /// Per tenant: the settings that differ.
    pub tenants: BTreeMap<String, TenantEnrichment>,
}

/// `[enrichment.tenants.<name>]`: any of the section's switches, for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TenantEnrichment {
    pub user_agent: Option<bool>,
    pub campaign: Option<bool>,
    pub referrer: Option<bool>,
    pub geo: Option<bool>,
    pub ip: Option<IpPolicy>,
    pub request_ip: Option<bool>,
}

impl Validate for EnrichConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let database = &self.geoip_database;
        if !database.as_os_str().is_empty() && !database.is_file() {
            problems.push(ConfigProblem::new(
                join(path, "geoip-database"),
                format!(
                    "{} is not a file: give the path of a MaxMind-format database (GeoLite2-City.mmdb, GeoIP2-Country.mmdb, …), or \"\" for none",
                    database.display()
                ),
            ));
        }
        if !self.client_ip_header.is_empty()
            && axum::http::HeaderName::from_bytes(self.client_ip_header.as_bytes()).is_err()
        {
            problems.push(ConfigProblem::new(
                join(path, "client-ip-header"),
                format!(
                    "{:?} is not an HTTP header name (e.g. \"x-forwarded-for\"; \"\" for none)",
                    self.client_ip_header
                ),
            ));
        }
        for name in self.tenants.keys() {
            if let Err(message) = sluice_core::tenant::check_tenant_name(name) {
                problems.push(ConfigProblem::new(
                    join(&join(path, "tenants"), name),
                    message,
                ));
            }
        }
    }
}

/// One tenant's switches, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    user_agent: bool,
    campaign: bool,
    referrer: bool,
    geo: bool,
    ip: IpPolicy,
    request_ip: bool,
}

impl Settings {
    fn with(self, tenant: &TenantEnrichment) -> Settings {
        Settings {
            user_agent: tenant.user_agent.unwrap_or(self.user_agent),
            campaign: tenant.campaign.unwrap_or(self.campaign),
            referrer: tenant.referrer.unwrap_or(self.referrer),
            geo: tenant.geo.unwrap_or(self.geo),
            ip: tenant.ip.unwrap_or(self.ip),
            request_ip: tenant.request_ip.unwrap_or(self.request_ip),
        }
    }

    fn any(&self) -> bool {
        self.user_agent
            || self.campaign
            || self.referrer
            || self.geo
            || self.request_ip
            || self.ip != IpPolicy::Keep
    }
}

/// The enrichment steps, ready to run (see the module docs).
#[derive(Debug)]
pub struct Enricher {
    defaults: Settings,
    tenants: HashMap<String, Settings>,
    agents: Option<agent::Agents>,
    geo: Option<geo::GeoSource>,
    client_ip_header: Option<axum::http::HeaderName>,
    /// `sluice_enrichment_geo_lookups_total{result="found"|"not_found"}`.
    geo_found: metrics::Counter,
    geo_not_found: metrics::Counter,
}

impl Enricher {
    /// Opens the geo database and compiles the user agent regexes the config asks for; the
    /// error names the setting and what is wrong.
    pub fn new(config: &EnrichConfig) -> Result<Enricher, String> {
        let defaults = Settings {
            user_agent: config.user_agent,
            campaign: config.campaign,
            referrer: config.referrer,
            geo: config.geo,
            ip: config.ip,
            request_ip: config.request_ip,
        };
        let tenants: HashMap<String, Settings> = config
            .tenants
            .iter()
            .map(|(name, tenant)| (name.clone(), defaults.with(tenant)))
            .collect();
        let geo = if config.geoip_database.as_os_str().is_empty() {
            None
        } else {
            Some(
                geo::GeoSource::open(Path::new(&config.geoip_database))
                    .map_err(|error| format!("enrichment.geoip-database: {error}"))?,
            )
        };
        let agents = if defaults.user_agent || tenants.values().any(|s| s.user_agent) {
            Some(agent::Agents::new()?)
        } else {
            None
        };
        let client_ip_header = match config.client_ip_header.as_str() {
            "" => None,
            name => Some(
                axum::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|error| format!("enrichment.client-ip-header: {error}"))?,
            ),
        };
        Ok(Enricher {
            defaults,
            tenants,
            agents,
            geo,
            client_ip_header,
            ..Enricher::none()
        })
    }

    /// Enrichment that changes nothing (tests, tools that append events as they are).
    pub fn none() -> Enricher {
        Enricher {
            defaults: Settings {
                user_agent: false,
                campaign: false,
                referrer: false,
                geo: false,
                ip: IpPolicy::Keep,
                request_ip: false,
            },
            tenants: HashMap::new(),
            agents: None,
            geo: None,
            client_ip_header: None,
            geo_found: metrics::counter!("sluice_enrichment_geo_lookups_total", "result" => "found"),
            geo_not_found: metrics::counter!("sluice_enrichment_geo_lookups_total", "result" => "not_found"),
        }
    }

    /// The geo database file, if one is configured.
    pub fn geo_database(&self) -> Option<&geo::GeoSource> {
        self.geo.as_ref()
    }

    /// Until `stop`: every [`GEO_RELOAD_INTERVAL`], takes a new edition of the geo database
    /// file if it changed (a file that cannot be read is logged, and the edition in use
    /// stays).
    pub async fn run_geo_reload(
        self: std::sync::Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        if self.geo.is_none() {
            return;
        }
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(GEO_RELOAD_INTERVAL) => {}
            }
            let enricher = std::sync::Arc::clone(&self);
            let reloaded = tokio::task::spawn_blocking(move || {
                let source = enricher.geo.as_ref()?;
                Some((source.reload(), source.current().description().to_owned()))
            })
            .await;
            match reloaded {
                Ok(Some((Ok(true), database))) => {
                    tracing::info!(%database, "a new edition of the geo database is in use");
                }
                Ok(Some((Err(error), database))) => {
                    tracing::warn!(%error, in_use = %database, "the geo database file changed but cannot be read; the edition in use stays");
                }
                _ => {}
            }
        }
    }

    /// The client's address of a request from `peer` with `headers`: the first address of
    /// the configured proxy header when it has one, else the peer's.
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Option<IpAddr> {
        let from_header = self.client_ip_header.as_ref().and_then(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            let first = value.split(',').next()?.trim();
            first
                .parse::<IpAddr>()
                .ok()
                // `[v6]:port` and `v4:port` forms some proxies write.
                .or_else(|| first.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        });
        from_header.or(peer)
    }

    /// Runs the steps on `event` (of `tenant`), which arrived from `client` (if known).
    pub fn enrich(&self, event: &mut Event<'_>, client: Option<IpAddr>) {
        let settings = self
            .tenants
            .get(event.tenant.as_ref())
            .copied()
            .unwrap_or(self.defaults);
        if !settings.any() {
            return;
        }
        let rendered = {
            let mut context = match event.context.as_deref() {
                // Normalization made it an object.
                Some(raw) => match Context::parse(raw.get()) {
                    Some(context) => context,
                    None => return,
                },
                None => Context::default(),
            };
            self.enrich_context(&mut context, settings, client);
            if !context.changed {
                return;
            }
            context.render()
        };
        if let Ok(raw) = RawValue::from_string(rendered) {
            event.context = Some(Cow::Owned(raw));
        }
    }

    /// The steps on a context.
    fn enrich_context(
        &self,
        context: &mut Context<'_>,
        settings: Settings,
        client: Option<IpAddr>,
    ) {
        // 1. The request's address, for events that have none.
        if settings.request_ip
            && !context.contains("ip")
            && let Some(client) = client
        {
            context.set("ip", json_text(&client.to_canonical().to_string()));
        }
        let ip = context
            .text("ip")
            .and_then(|text| text.trim().parse::<IpAddr>().ok());
        // 2. The place.
        if settings.geo
            && !context.contains("geo")
            && let (Some(source), Some(ip)) = (&self.geo, ip)
        {
            match source.current().lookup(ip) {
                Some(geo) => {
                    self.geo_found.increment(1);
                    if let Ok(geo) = serde_json::value::to_raw_value(&geo) {
                        context.set("geo", geo);
                    }
                }
                None => self.geo_not_found.increment(1),
            }
        }
        // 3. What is kept of the address.
        match (settings.ip, ip) {
            (IpPolicy::Keep, _) => {}
            (IpPolicy::Truncate, Some(ip)) => {
                context.set("ip", json_text(&geo::truncate(ip).to_string()));
            }
            (IpPolicy::Truncate | IpPolicy::Drop, _) => context.remove("ip"),
        }
        // 4. The user agent.
        if settings.user_agent
            && let Some(agents) = &self.agents
            && let Some(user_agent) = context.text("userAgent")
            && !user_agent.is_empty()
        {
            let agent = agents.parse(&user_agent);
            for (key, json) in agent.objects() {
                if !context.contains(key) {
                    context.set(key, json.to_owned());
                }
            }
        }
        // 5 and 6. The campaign and the referrer, from the page.
        if (settings.campaign || settings.referrer)
            && let Some(page) = context.get("page")
            && let Ok(page) = serde_json::from_str::<Page<'_>>(page.get())
        {
            let (url, search) = (page.url.as_deref(), page.search.as_deref());
            let found = campaign::campaign(url, search);
            let sent_campaign = context
                .get("campaign")
                .is_some_and(|campaign| !matches!(campaign.get(), "{}" | "null"));
            let class = (settings.referrer && !context.contains("referrer")).then(|| {
                campaign::referrer(
                    page.referrer.as_deref(),
                    url,
                    found.is_some() || sent_campaign,
                )
            });
            if settings.campaign
                && let Some(found) = found
                && !context.contains("campaign")
                && let Ok(found) = serde_json::value::to_raw_value(&found)
            {
                context.set("campaign", found);
            }
            if let Some(class) = class
                && let Ok(class) = serde_json::value::to_raw_value(&class)
            {
                context.set("referrer", class);
            }
        }
    }
}

/// The fields of `context.page` enrichment reads.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    search: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    referrer: Option<Cow<'a, str>>,
}

/// `text` as a JSON string.
fn json_text(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).unwrap_or_else(|_| {
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("null is JSON"))
    })
}

/// A context object as its top-level keys with their values' text: what enrichment reads and
/// adds, without parsing or re-encoding the values it does not touch (their order and text
/// are kept).
#[derive(Default)]
struct Context<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
    changed: bool,
}

impl<'a> Context<'a> {
    fn parse(text: &'a str) -> Option<Context<'a>> {
        struct Entries<'a>(Vec<(Cow<'a, str>, Cow<'a, RawValue>)>);
        impl<'de> Deserialize<'de> for Entries<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = Entries<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<M: serde::de::MapAccess<'de>>(
                        self,
                        mut map: M,
                    ) -> Result<Self::Value, M::Error> {
                        let mut entries = Vec::new();
                        while let Some((key, value)) =
                            map.next_entry::<Cow<'de, str>, &'de RawValue>()?
                        {
                            entries.push((key, Cow::Borrowed(value)));
                        }
                        Ok(Entries(entries))
                    }
                }
                deserializer.deserialize_map(Visit)
            }
        }
        serde_json::from_str::<Entries<'a>>(text)
            .ok()
            .map(|entries| Context {
                entries: entries.0,
                changed: false,
            })
    }

    fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_ref())
    }

    fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key` when it is a string.
    fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        #[derive(Deserialize)]
        struct Text<'t>(#[serde(borrow)] Cow<'t, str>);
        serde_json::from_str::<Text<'_>>(self.get(key)?.get())
            .ok()
            .map(|text| text.0)
    }

    fn set(&mut self, key: &str, value: Box<RawValue>) {
        self.remove(key);
        self.entries
            .push((Cow::Owned(key.to_owned()), Cow::Owned(value)));
        self.changed = true;
    }

    fn remove(&mut self, key: &str) {
        let before = self.entries.len();
        self.entries.retain(|(name, _)| name != key);
        self.changed |= self.entries.len() != before;
    }

    fn render(&self) -> String {
        let size: usize = self
            .entries
            .iter()
            .map(|(key, value)| key.len() + value.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (index, (key, value)) in self.entries.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            // Keys are plain names: escaped only when they need it.
            if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push('"');
                out.push_str(key);
                out.push('"');
            } else {
                out.push_str(json_text(key).get());
            }
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests;
