//! Where a visit came from: the UTM parameters of the page's address (`context.campaign`, the
//! shape Segment's analytics.js writes itself when it sees them) and the class of the
//! referring page (`context.referrer`).

use serde_json::{Map, Value};
use url::Url;

/// UTM parameter → `context.campaign` key (Segment's names: `utm_campaign` is `name`).
const UTM: [(&str, &str); 5] = [
    ("utm_source", "source"),
    ("utm_medium", "medium"),
    ("utm_campaign", "name"),
    ("utm_term", "term"),
    ("utm_content", "content"),
];

/// Longest UTM value kept (a campaign name is short; a longer value is cut at a character
/// boundary).
const MAX_VALUE: usize = 256;

/// `context.campaign` from the UTM parameters of `search` (`?utm_source=…`, analytics.js's
/// `context.page.search`) or else of `url`'s query; `None` without any.
pub fn campaign(url: Option<&str>, search: Option<&str>) -> Option<Map<String, Value>> {
    let query = match search.filter(|search| search.len() > 1) {
        Some(search) => search.trim_start_matches('?').to_owned(),
        None => Url::parse(url?).ok()?.query()?.to_owned(),
    };
    let mut found = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some((_, name)) = UTM.iter().find(|(utm, _)| key.eq_ignore_ascii_case(utm)) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || found.contains_key(*name) {
            continue;
        }
        let mut end = value.len().min(MAX_VALUE);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        found.insert((*name).into(), value[..end].into());
    }
    (!found.is_empty()).then_some(found)
}

/// Known referrers: a host (or a name followed only by short labels, `google` matching
/// `google.co.uk`), its class and display name.
const KNOWN: &[(&str, &str, &str)] = &[
    // Webmail first: mail.google.com is not a search.
    ("mail.google.com", "email", "Gmail"),
    ("outlook.live.com", "email", "Outlook"),
    ("outlook.office.com", "email", "Outlook"),
    ("outlook.office365.com", "email", "Outlook"),
    ("mail.yahoo.com", "email", "Yahoo Mail"),
    ("mail.proton.me", "email", "Proton Mail"),
    ("google", "search", "Google"),
    ("bing.com", "search", "Bing"),
    ("duckduckgo.com", "search", "DuckDuckGo"),
    ("yahoo", "search", "Yahoo"),
    ("baidu.com", "search", "Baidu"),
    ("yandex", "search", "Yandex"),
    ("ecosia.org", "search", "Ecosia"),
    ("search.brave.com", "search", "Brave Search"),
    ("startpage.com", "search", "Startpage"),
    ("qwant.com", "search", "Qwant"),
    ("naver.com", "search", "Naver"),
    ("seznam.cz", "search", "Seznam"),
    ("facebook.com", "social", "Facebook"),
    ("fb.com", "social", "Facebook"),
    ("instagram.com", "social", "Instagram"),
    ("t.co", "social", "Twitter"),
    ("twitter.com", "social", "Twitter"),
    ("x.com", "social", "X"),
    ("linkedin.com", "social", "LinkedIn"),
    ("lnkd.in", "social", "LinkedIn"),
    ("reddit.com", "social", "Reddit"),
    ("pinterest", "social", "Pinterest"),
    ("youtube.com", "social", "YouTube"),
    ("tiktok.com", "social", "TikTok"),
    ("threads.net", "social", "Threads"),
    ("bsky.app", "social", "Bluesky"),
    ("news.ycombinator.com", "social", "Hacker News"),
    ("vk.com", "social", "VK"),
    ("weibo.com", "social", "Weibo"),
    ("t.me", "social", "Telegram"),
    ("discord.com", "social", "Discord"),
    ("whatsapp.com", "social", "WhatsApp"),
];

/// `context.referrer`: `{"type", "name"?, "host"?}` where `type` is
/// - `campaign` when the page carries UTM parameters (whoever referred it),
/// - `direct` without a referrer,
/// - `internal` when the referrer is the page's own site (`www.` aside),
/// - `search`, `social` or `email` for the known sites above (with their `name`),
/// - `referral` for any other site.
pub fn referrer(referrer: Option<&str>, page: Option<&str>, campaign: bool) -> Map<String, Value> {
    let host_of = |address: &str| {
        Url::parse(address)
            .ok()
            .and_then(|url| url.host_str().map(|host| host.to_ascii_lowercase()))
    };
    let host = referrer.filter(|r| !r.is_empty()).and_then(host_of);
    let mut map = Map::new();
    let (kind, name) = match &host {
        _ if campaign => ("campaign", None),
        None => ("direct", None),
        Some(host)
            if page
                .and_then(host_of)
                .is_some_and(|page| bare(&page) == bare(host)) =>
        {
            ("internal", None)
        }
        Some(host) => KNOWN
            .iter()
            .find(|(pattern, _, _)| matches(host, pattern))
            .map_or(("referral", None), |(_, kind, name)| (*kind, Some(*name))),
    };
    map.insert("type".into(), kind.into());
    if let Some(name) = name {
        map.insert("name".into(), name.into());
    }
    if let Some(host) = host {
        map.insert("host".into(), host.into());
    }
    map
}

fn bare(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

/// Whether `host` is `pattern` or one of its subdomains; a pattern without a dot is a name
/// followed by one or two short labels (`google.com`, `google.co.uk`, `www.google.de`).
fn matches(host: &str, pattern: &str) -> bool {
    if pattern.contains('.') {
        return host == pattern
            || host
                .strip_suffix(pattern)
                .is_some_and(|rest| rest.ends_with('.'));
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.iter().enumerate().any(|(index, label)| {
        let rest = &labels[index + 1..];
        *label == pattern
            && (1..=2).contains(&rest.len())
            && rest.iter().all(|label| (2..=3).contains(&label.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utm_parameters_become_segments_campaign_object() {
        let found = campaign(
            Some(
                "https://shop.example/p?utm_source=news&utm_medium=email&utm_campaign=Black%20Friday&x=1",
            ),
            None,
        );
        assert_eq!(
            Value::from(found.unwrap()),
            json!({"source": "news", "medium": "email", "name": "Black Friday"})
        );
        // analytics.js's context.page.search wins over the address; keys ignore case; the
        // first of a repeated key counts; empty values are none.
        let found = campaign(
            Some("https://shop.example/?utm_source=ignored"),
            Some("?UTM_Source=ads&utm_source=second&utm_term=shoes&utm_content="),
        );
        assert_eq!(
            Value::from(found.unwrap()),
            json!({"source": "ads", "term": "shoes"})
        );
        assert_eq!(campaign(Some("https://shop.example/?q=1"), None), None);
        assert_eq!(campaign(Some("not a url"), None), None);
        assert_eq!(campaign(None, Some("?")), None);
        let long = format!("?utm_source={}", "é".repeat(200));
        let found = campaign(None, Some(&long)).unwrap();
        let source = found["source"].as_str().unwrap();
        assert!(source.len() <= MAX_VALUE && source.chars().all(|c| c == 'é'));
    }

    #[test]
    fn referrers_are_classed() {
        let page = Some("https://www.shop.example/cart");
        let class = |referrer: Option<&str>, campaign: bool| {
            Value::from(super::referrer(referrer, page, campaign))
        };
        assert_eq!(class(None, false), json!({"type": "direct"}));
        assert_eq!(class(Some(""), false), json!({"type": "direct"}));
        assert_eq!(
            class(Some("https://www.google.co.uk/search?q=x"), false),
            json!({"type": "search", "name": "Google", "host": "www.google.co.uk"})
        );
        assert_eq!(
            class(Some("https://mail.google.com/mail/u/0"), false)["type"],
            "email"
        );
        assert_eq!(
            class(Some("https://l.facebook.com/l.php?u=x"), false),
            json!({"type": "social", "name": "Facebook", "host": "l.facebook.com"})
        );
        assert_eq!(class(Some("https://t.co/abc"), false)["name"], "Twitter");
        assert_eq!(
            class(Some("https://shop.example/home"), false),
            json!({"type": "internal", "host": "shop.example"})
        );
        assert_eq!(
            class(Some("https://blog.other.example/post"), false),
            json!({"type": "referral", "host": "blog.other.example"})
        );
        // A look-alike is not Google; a campaign wins over any referrer.
        assert_eq!(
            class(Some("https://google.evil-site.example/"), false)["type"],
            "referral"
        );
        assert_eq!(
            class(Some("https://notgoogle.com/"), false)["type"],
            "referral"
        );
        assert_eq!(
            class(Some("https://www.bing.com/"), true),
            json!({"type": "campaign", "host": "www.bing.com"})
        );
        assert_eq!(class(Some("garbage"), false), json!({"type": "direct"}));
    }
}
