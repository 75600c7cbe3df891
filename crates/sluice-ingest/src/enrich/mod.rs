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
//!    database gives `context.geo` (see [`geo::GeoDatabase::lookup`]).
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
use serde_json::{Map, Value};
use sluice_core::config::{ConfigProblem, Validate, join};
use sluice_core::event::Event;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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
    geo: Option<geo::GeoDatabase>,
    client_ip_header: Option<axum::http::HeaderName>,
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
                geo::GeoDatabase::open(Path::new(&config.geoip_database))
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
        }
    }

    /// The opened geo database, if any (for the start-up log).
    pub fn geo_database(&self) -> Option<&geo::GeoDatabase> {
        self.geo.as_ref()
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
        let mut context: Map<String, Value> = match &event.context {
            // Normalization made it an object.
            Some(raw) => match serde_json::from_str(raw.get()) {
                Ok(map) => map,
                Err(_) => return,
            },
            None => Map::new(),
        };
        if self.enrich_context(&mut context, settings, client)
            && let Ok(text) = serde_json::to_string(&context)
            && let Ok(raw) = serde_json::value::RawValue::from_string(text)
        {
            event.context = Some(Cow::Owned(raw));
        }
    }

    /// The steps on a context object; whether anything changed.
    fn enrich_context(
        &self,
        context: &mut Map<String, Value>,
        settings: Settings,
        client: Option<IpAddr>,
    ) -> bool {
        let mut changed = false;
        // 1. The request's address, for events that have none.
        if settings.request_ip
            && !context.contains_key("ip")
            && let Some(client) = client
        {
            context.insert("ip".into(), client.to_canonical().to_string().into());
            changed = true;
        }
        let ip = context
            .get("ip")
            .and_then(Value::as_str)
            .and_then(|text| text.trim().parse::<IpAddr>().ok());
        // 2. The place.
        if settings.geo
            && !context.contains_key("geo")
            && let (Some(database), Some(ip)) = (&self.geo, ip)
            && let Some(geo) = database.lookup(ip)
        {
            context.insert("geo".into(), geo.into());
            changed = true;
        }
        // 3. What is kept of the address.
        match settings.ip {
            IpPolicy::Keep => {}
            IpPolicy::Drop => changed |= context.remove("ip").is_some(),
            IpPolicy::Truncate => match ip {
                Some(ip) => {
                    context.insert("ip".into(), geo::truncate(ip).to_string().into());
                    changed = true;
                }
                None => changed |= context.remove("ip").is_some(),
            },
        }
        // 4. The user agent.
        if settings.user_agent
            && let Some(agents) = &self.agents
            && let Some(user_agent) = context.get("userAgent").and_then(Value::as_str)
            && !user_agent.is_empty()
        {
            let agent = agents.parse(user_agent);
            let mut add = |key: &str, value: Option<&Map<String, Value>>| {
                if let Some(value) = value
                    && !context.contains_key(key)
                {
                    context.insert(key.into(), Value::Object(value.clone()));
                    changed = true;
                }
            };
            add("browser", agent.browser.as_ref());
            add("os", agent.os.as_ref());
            add("device", Some(&agent.device));
        }
        // 5 and 6. The campaign and the referrer, from the page.
        if settings.campaign || settings.referrer {
            let page = context.get("page").and_then(Value::as_object);
            let text = |key: &str| page.and_then(|page| page.get(key)).and_then(Value::as_str);
            let (url, search, referrer) = (text("url"), text("search"), text("referrer"));
            let found = campaign::campaign(url, search);
            let has_campaign = found.is_some()
                || context
                    .get("campaign")
                    .and_then(Value::as_object)
                    .is_some_and(|campaign| !campaign.is_empty());
            let class = (settings.referrer && page.is_some() && !context.contains_key("referrer"))
                .then(|| campaign::referrer(referrer, url, has_campaign));
            if settings.campaign
                && let Some(found) = found
                && !context.contains_key("campaign")
            {
                context.insert("campaign".into(), found.into());
                changed = true;
            }
            if let Some(class) = class {
                context.insert("referrer".into(), class.into());
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests;
