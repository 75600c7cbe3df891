//! User agent → browser, operating system and device, with uap-core's regexes (the standard
//! set every ua-parser port shares, vendored in `data/uap-core/`, converted to JSON) and a
//! bounded cache: a site's visitors send a few thousand distinct user agents, and a parse is
//! tens of microseconds while a cache hit is a hash lookup.

use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// uap-core 0.18.0's `regexes.yaml` as JSON (Apache-2.0; see `data/uap-core/LICENSE`).
const REGEXES: &str = include_str!("../../data/uap-core/regexes.json");

/// Distinct user agents kept parsed; when full, the cache starts over (the common agents are
/// back after a few requests).
const CACHE_ENTRIES: usize = 16_384;

/// User agents longer than this are parsed each time rather than cached.
const CACHE_MAX_LEN: usize = 1024;

/// What a user agent says, as the context objects it adds (absent when uap-core does not
/// recognize that part).
#[derive(Debug)]
pub struct Agent {
    /// `{"name", "version"}`: the browser, or the app's HTTP library.
    pub browser: Option<Map<String, Value>>,
    /// `{"name", "version"}`: the operating system (Segment's `context.os` shape).
    pub os: Option<Map<String, Value>>,
    /// `{"type", "brand", "model"}`: `type` is `mobile`, `tablet`, `desktop`, `bot`
    /// (crawlers and headless browsers) or `other`.
    pub device: Map<String, Value>,
    /// The three as JSON text (`None` for an absent one), written into contexts as they are.
    rendered: [Option<Box<RawValue>>; 3],
}

impl Agent {
    fn new(
        browser: Option<Map<String, Value>>,
        os: Option<Map<String, Value>>,
        device: Map<String, Value>,
    ) -> Agent {
        let render = |map: Option<&Map<String, Value>>| {
            map.and_then(|map| serde_json::value::to_raw_value(map).ok())
        };
        let rendered = [
            render(browser.as_ref()),
            render(os.as_ref()),
            render(Some(&device)),
        ];
        Agent {
            browser,
            os,
            device,
            rendered,
        }
    }

    /// The context keys this agent adds, with their JSON text.
    pub fn objects(&self) -> impl Iterator<Item = (&'static str, &RawValue)> {
        ["browser", "os", "device"]
            .into_iter()
            .zip(&self.rendered)
            .filter_map(|(key, json)| Some((key, json.as_deref()?)))
    }
}

/// The parser and its cache, shared by every request.
pub struct Agents {
    extractor: ua_parser::Extractor<'static>,
    cache: Mutex<HashMap<Box<str>, Arc<Agent>>>,
    /// `sluice_enrichment_user_agent_parses_total`: parses the cache did not answer.
    parses: metrics::Counter,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("cached", &self.cache.lock().len())
            .finish()
    }
}

impl Agents {
    /// Compiles the built-in regexes (a few hundred milliseconds: done once, at start).
    pub fn new() -> Result<Agents, String> {
        let regexes: ua_parser::Regexes<'static> = serde_json::from_str(REGEXES)
            .map_err(|error| format!("the built-in user agent regexes do not load: {error}"))?;
        let extractor = ua_parser::Extractor::try_from(regexes)
            .map_err(|error| format!("the built-in user agent regexes do not compile: {error}"))?;
        Ok(Agents {
            extractor,
            cache: Mutex::new(HashMap::new()),
            parses: metrics::counter!("sluice_enrichment_user_agent_parses_total"),
        })
    }

    /// What `user_agent` says (cached).
    pub fn parse(&self, user_agent: &str) -> Arc<Agent> {
        if user_agent.len() > CACHE_MAX_LEN {
            return Arc::new(self.extract(user_agent));
        }
        if let Some(agent) = self.cache.lock().get(user_agent) {
            return Arc::clone(agent);
        }
        // Parsed outside the lock: two requests may parse one new agent at once, harmlessly.
        let agent = Arc::new(self.extract(user_agent));
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(user_agent.into(), Arc::clone(&agent));
        agent
    }

    fn extract(&self, user_agent: &str) -> Agent {
        self.parses.increment(1);
        let (browser, os, device) = self.extractor.extract(user_agent);
        let browser = browser
            .filter(|browser| browser.family != "Other")
            .map(|browser| {
                name_version(
                    &browser.family,
                    [browser.major, browser.minor, browser.patch],
                )
            });
        let os = os.filter(|os| os.os != "Other").map(|os| {
            name_version(
                &os.os,
                [
                    os.major.as_deref(),
                    os.minor.as_deref(),
                    os.patch.as_deref(),
                ],
            )
        });
        let os_name = os
            .as_ref()
            .and_then(|os| os.get("name"))
            .and_then(Value::as_str);
        // Crawlers (uap-core's "Spider" device) and headless browsers (automation, not
        // people: HeadlessChrome, PhantomJS) are bots.
        let browser_name = browser
            .as_ref()
            .and_then(|browser| browser.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spider = device
            .as_ref()
            .is_some_and(|device| device.device == "Spider")
            || ["Spider", "Headless", "PhantomJS"]
                .iter()
                .any(|bot| browser_name.contains(bot));
        let mut described = Map::new();
        described.insert(
            "type".into(),
            device_type(user_agent, spider, os_name).into(),
        );
        if let Some(device) = device.filter(|device| device.device != "Other" && !spider) {
            if let Some(brand) = device.brand {
                described.insert("brand".into(), brand.into_owned().into());
            }
            if let Some(model) = device.model {
                described.insert("model".into(), model.into_owned().into());
            }
        }
        Agent::new(browser, os, described)
    }
}

/// `{"name": name, "version": "major.minor.patch"}` with the parts uap-core found.
fn name_version(name: &str, parts: [Option<&str>; 3]) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("name".into(), name.into());
    let version: Vec<&str> = parts.into_iter().map_while(|part| part).collect();
    if !version.is_empty() {
        map.insert("version".into(), version.join(".").into());
    }
    map
}

/// The device class, by the rules browsers' own documentation gives (MDN: "Mobi" in the agent
/// means a phone; an iPad, or Android without "Mobile", is a tablet) and uap-core's crawler
/// detection.
fn device_type(user_agent: &str, spider: bool, os: Option<&str>) -> &'static str {
    if spider {
        return "bot";
    }
    let android = user_agent.contains("Android");
    if user_agent.contains("iPad")
        || user_agent.contains("Tablet")
        || (android && !user_agent.contains("Mobile"))
    {
        return "tablet";
    }
    if user_agent.contains("Mobi") || user_agent.contains("iPhone") || android {
        return "mobile";
    }
    match os {
        Some(os)
            if [
                "Windows",
                "Mac OS X",
                "Linux",
                "Ubuntu",
                "Chrome OS",
                "Fedora",
                "FreeBSD",
            ]
            .iter()
            .any(|desktop| os.starts_with(desktop)) =>
        {
            "desktop"
        }
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1";
    const SAMSUNG_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";
    const FIREFOX_WINDOWS: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    fn agents() -> Agents {
        Agents::new().unwrap()
    }

    #[test]
    fn browsers_systems_and_devices_of_common_agents() {
        let agents = agents();
        let chrome = agents.parse(CHROME_MAC);
        assert_eq!(
            Value::from(chrome.browser.clone().unwrap()),
            json!({"name": "Chrome", "version": "120.0.6099"})
        );
        assert_eq!(
            Value::from(chrome.os.clone().unwrap()),
            json!({"name": "Mac OS X", "version": "10.15.7"})
        );
        assert_eq!(chrome.device["type"], "desktop");
        assert_eq!(chrome.device["brand"], "Apple");

        let iphone = agents.parse(SAFARI_IPHONE);
        assert_eq!(iphone.browser.as_ref().unwrap()["name"], "Mobile Safari");
        assert_eq!(iphone.os.as_ref().unwrap()["name"], "iOS");
        assert_eq!(iphone.os.as_ref().unwrap()["version"], "17.1.2");
        assert_eq!(
            Value::from(iphone.device.clone()),
            json!({"type": "mobile", "brand": "Apple", "model": "iPhone"})
        );

        let tablet = agents.parse(SAMSUNG_TABLET);
        assert_eq!(tablet.device["type"], "tablet");
        assert_eq!(tablet.os.as_ref().unwrap()["name"], "Android");

        let firefox = agents.parse(FIREFOX_WINDOWS);
        assert_eq!(firefox.browser.as_ref().unwrap()["name"], "Firefox");
        assert_eq!(firefox.browser.as_ref().unwrap()["version"], "121.0");
        assert_eq!(firefox.os.as_ref().unwrap()["name"], "Windows");
        assert_eq!(
            Value::from(firefox.device.clone()),
            json!({"type": "desktop"})
        );

        let headless = agents.parse("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36");
        assert_eq!(headless.browser.as_ref().unwrap()["name"], "HeadlessChrome");
        assert_eq!(headless.device["type"], "bot");

        let bot = agents.parse(GOOGLEBOT);
        assert_eq!(bot.device["type"], "bot");
        assert_eq!(bot.browser.as_ref().unwrap()["name"], "Googlebot");
    }

    #[test]
    fn unknown_agents_add_only_a_device_type_and_parses_are_cached() {
        let agents = agents();
        let unknown = agents.parse("zq-unknown-agent");
        assert_eq!(unknown.browser, None);
        assert_eq!(unknown.os, None);
        assert_eq!(
            Value::from(unknown.device.clone()),
            json!({"type": "other"})
        );
        let first = agents.parse(CHROME_MAC);
        let second = agents.parse(CHROME_MAC);
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second parse is the cached one"
        );
        let long = "x".repeat(CACHE_MAX_LEN + 1);
        let (a, b) = (agents.parse(&long), agents.parse(&long));
        assert!(!Arc::ptr_eq(&a, &b), "very long agents are not cached");
        assert_eq!(agents.cache.lock().len(), 2);
    }
}
