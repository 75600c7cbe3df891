use super::*;
use serde_json::{Value, json};
use sluice_core::event::EventType;

/// A small City database of our own: 203.0.113.0/24 in Berlin, 198.51.100.0/24 in France
/// without a city.
pub(crate) fn write_test_database(path: &Path) {
    use maxminddb_writer::paths::IpAddrWithMask;
    let mut database = maxminddb_writer::Database::default();
    database.metadata.database_type = "sluice-test-City".into();
    database.metadata.binary_format_major_version = 2;
    database.metadata.languages = vec!["en".into()];
    let berlin = database
        .insert_value(json!({
            "city": {"names": {"en": "Berlin"}},
            "continent": {"code": "EU"},
            "country": {"iso_code": "DE", "names": {"en": "Germany"}},
            "subdivisions": [{"iso_code": "BE"}],
            "location": {"latitude": 52.52, "longitude": 13.405, "time_zone": "Europe/Berlin"}
        }))
        .unwrap();
    let france = database
        .insert_value(json!({
            "continent": {"code": "EU"},
            "country": {"iso_code": "FR", "names": {"en": "France"}}
        }))
        .unwrap();
    database.insert_node("203.0.113.0/24".parse::<IpAddrWithMask>().unwrap(), berlin);
    database.insert_node("198.51.100.0/24".parse::<IpAddrWithMask>().unwrap(), france);
    let file = std::fs::File::create(path).unwrap();
    database.write_to(std::io::BufWriter::new(file)).unwrap();
}

/// A Country database of `(network, country code)` pairs.
pub(crate) fn write_database(path: &Path, networks: &[(&str, &str)]) {
    use maxminddb_writer::paths::IpAddrWithMask;
    let mut database = maxminddb_writer::Database::default();
    database.metadata.database_type = "sluice-test-Country".into();
    database.metadata.binary_format_major_version = 2;
    for (network, country) in networks {
        let data = database
            .insert_value(json!({"country": {"iso_code": country}}))
            .unwrap();
        database.insert_node(network.parse::<IpAddrWithMask>().unwrap(), data);
    }
    let file = std::fs::File::create(path).unwrap();
    database.write_to(std::io::BufWriter::new(file)).unwrap();
}

fn config(geoip: &Path) -> EnrichConfig {
    EnrichConfig {
        user_agent: true,
        campaign: true,
        referrer: true,
        geo: true,
        geoip_database: geoip.to_path_buf(),
        ip: IpPolicy::Keep,
        request_ip: true,
        client_ip_header: String::new(),
        tenants: BTreeMap::new(),
    }
}

fn event(tenant: &str, context: Option<Value>) -> Event<'static> {
    Event {
        message_id: "m1".into(),
        tenant: tenant.to_owned().into(),
        kind: EventType::Page,
        event: None,
        name: None,
        category: None,
        user_id: Some("u1".into()),
        anonymous_id: None,
        group_id: None,
        previous_id: None,
        timestamp: 1,
        received_at: 1,
        sent_at: None,
        original_timestamp: None,
        properties: None,
        traits: None,
        context: context.map(|context| {
            Cow::Owned(serde_json::value::RawValue::from_string(context.to_string()).unwrap())
        }),
        integrations: None,
        channel: None,
        version: None,
        metadata: None,
        schema_violations: None,
    }
}

fn context_of(event: &Event<'_>) -> Value {
    serde_json::from_str(event.context.as_ref().unwrap().get()).unwrap()
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

#[test]
fn a_browser_page_view_gets_place_device_campaign_and_referrer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    write_test_database(&path);
    let enricher = Enricher::new(&config(&path)).unwrap();
    assert!(
        enricher
            .geo_database()
            .unwrap()
            .current()
            .description()
            .contains("sluice-test-City")
    );
    let mut page = event(
        "shop",
        Some(json!({
            "userAgent": CHROME,
            "page": {
                "url": "https://shop.example/sale?utm_source=newsletter&utm_medium=email",
                "referrer": "https://www.google.com/"
            }
        })),
    );
    enricher.enrich(&mut page, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(
        context_of(&page),
        json!({
            "userAgent": CHROME,
            "page": {
                "url": "https://shop.example/sale?utm_source=newsletter&utm_medium=email",
                "referrer": "https://www.google.com/"
            },
            "ip": "203.0.113.9",
            "geo": {
                "country": "DE", "country_name": "Germany", "region": "BE", "city": "Berlin",
                "continent": "EU", "latitude": 52.52, "longitude": 13.405,
                "time_zone": "Europe/Berlin"
            },
            "browser": {"name": "Chrome", "version": "120.0.0"},
            "os": {"name": "Windows", "version": "10"},
            "device": {"type": "desktop"},
            "campaign": {"source": "newsletter", "medium": "email"},
            "referrer": {"type": "campaign", "host": "www.google.com"}
        })
    );
}

#[test]
fn what_the_client_sent_wins_and_nothing_is_added_without_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    write_test_database(&path);
    let enricher = Enricher::new(&config(&path)).unwrap();
    // A mobile SDK's own objects and a forwarded address stay as they are.
    let sent = json!({
        "ip": "198.51.100.20",
        "userAgent": CHROME,
        "os": {"name": "iOS", "version": "17.1"},
        "device": {"type": "ios", "model": "iPhone15,2"},
        "geo": {"country": "ZZ"}
    });
    let mut mobile = event("shop", Some(sent.clone()));
    enricher.enrich(&mut mobile, Some("203.0.113.9".parse().unwrap()));
    let mut expected = sent.clone();
    expected["browser"] = json!({"name": "Chrome", "version": "120.0.0"});
    assert_eq!(context_of(&mobile), expected);

    // A server-side event without a request address, user agent or page gains nothing and
    // keeps its text byte for byte.
    let mut server = event(
        "shop",
        Some(json!({"library": {"name": "analytics-python"}})),
    );
    let before = server.context.as_ref().unwrap().get().to_owned();
    enricher.enrich(&mut server, None);
    assert_eq!(server.context.as_ref().unwrap().get(), before);
    let mut bare = event("shop", None);
    enricher.enrich(&mut bare, None);
    assert!(bare.context.is_none());
    // An address the database does not cover has no place.
    let mut private = event("shop", None);
    enricher.enrich(&mut private, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(context_of(&private), json!({"ip": "10.1.2.3"}));
}

#[test]
fn addresses_are_truncated_or_dropped_after_the_lookup_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    write_test_database(&path);
    let mut settings = config(&path);
    settings.ip = IpPolicy::Truncate;
    settings.tenants.insert(
        "private".into(),
        TenantEnrichment {
            ip: Some(IpPolicy::Drop),
            user_agent: Some(false),
            ..TenantEnrichment::default()
        },
    );
    settings.tenants.insert(
        "raw".into(),
        TenantEnrichment {
            user_agent: Some(false),
            campaign: Some(false),
            referrer: Some(false),
            geo: Some(false),
            ip: Some(IpPolicy::Keep),
            request_ip: Some(false),
        },
    );
    let enricher = Enricher::new(&settings).unwrap();
    let client = Some("203.0.113.77".parse().unwrap());

    let mut truncated = event("shop", None);
    enricher.enrich(&mut truncated, client);
    let context = context_of(&truncated);
    assert_eq!(context["ip"], "203.0.113.0");
    assert_eq!(
        context["geo"]["city"], "Berlin",
        "looked up before truncation"
    );

    let mut dropped = event("private", Some(json!({"userAgent": CHROME})));
    enricher.enrich(&mut dropped, client);
    let context = context_of(&dropped);
    assert!(context.get("ip").is_none(), "{context}");
    assert_eq!(context["geo"]["country"], "DE");
    assert!(
        context.get("browser").is_none(),
        "user-agent is off for this tenant"
    );

    let mut raw = event("raw", Some(json!({"userAgent": CHROME})));
    enricher.enrich(&mut raw, client);
    assert_eq!(context_of(&raw), json!({"userAgent": CHROME}));

    // A client's ip that is not an address cannot be truncated: it is not kept.
    let mut odd = event("shop", Some(json!({"ip": "unknown"})));
    enricher.enrich(&mut odd, client);
    assert_eq!(context_of(&odd), json!({}));
}

#[test]
fn the_client_address_comes_from_the_proxy_header_when_configured() {
    let mut settings = config(Path::new(""));
    settings.geoip_database = PathBuf::new();
    let plain = Enricher::new(&settings).unwrap();
    settings.client_ip_header = "x-forwarded-for".into();
    let proxied = Enricher::new(&settings).unwrap();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.1".parse().unwrap());
    let peer = Some("10.0.0.2".parse().unwrap());
    assert_eq!(plain.client_ip(peer, &headers), peer);
    assert_eq!(
        proxied.client_ip(peer, &headers),
        Some("198.51.100.7".parse().unwrap())
    );
    headers.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
    assert_eq!(
        proxied.client_ip(peer, &headers),
        Some("2001:db8::1".parse().unwrap())
    );
    headers.insert("x-forwarded-for", "garbage".parse().unwrap());
    assert_eq!(proxied.client_ip(peer, &headers), peer);
}

#[test]
fn bad_settings_are_named() {
    let mut settings = config(Path::new("/nonexistent/city.mmdb"));
    settings.client_ip_header = "bad header".into();
    settings
        .tenants
        .insert("Bad Name".into(), TenantEnrichment::default());
    let mut problems = Vec::new();
    settings.validate("enrichment", &mut problems);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "enrichment.geoip-database",
            "enrichment.client-ip-header",
            "enrichment.tenants.Bad Name"
        ]
    );
    assert!(problems[0].message.contains("/nonexistent/city.mmdb"));
    let error = Enricher::new(&settings).unwrap_err();
    assert!(error.starts_with("enrichment.geoip-database: "), "{error}");
}

#[test]
fn values_enrichment_does_not_touch_keep_their_text_and_order() {
    let mut settings = config(Path::new(""));
    settings.geoip_database = PathBuf::new();
    let enricher = Enricher::new(&settings).unwrap();
    let sent = r#"{"zeta":{"b":1,"a":2},"n":1.50,"text":"caf\u00e9 \"q\"","userAgent":"zq-unknown-agent"}"#;
    let mut event = event("shop", None);
    event.context = Some(Cow::Owned(
        serde_json::value::RawValue::from_string(sent.to_owned()).unwrap(),
    ));
    enricher.enrich(&mut event, None);
    let stored = event.context.as_ref().unwrap().get();
    assert_eq!(
        stored,
        r#"{"zeta":{"b":1,"a":2},"n":1.50,"text":"caf\u00e9 \"q\"","userAgent":"zq-unknown-agent","device":{"type":"other"}}"#
    );
}
