use super::*;
use crate::json::FieldSet;
use crate::plan::LatePolicy;
use crate::sql::{MetricDefaults, parse_metric};

const EVENT: &str = r#"{"tenant":"shop","type":"track","event":"Order Completed","user_id":"u1",
  "timestamp":1714564740000,"received_at":1714564741000,
  "properties":{"revenue":19.99,"price":"12.50","url":"/Home","coupon":null,"tags":["a"],"ok":true,
                "name":"caf\u00e9"},
  "context":{"campaign":{"source":"Google"}}}"#;

fn plan(select: &str, filter: &str) -> MetricPlan {
    let sql = format!(
        "CREATE METRIC m AS SELECT {select} FROM events WHERE {filter} GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)"
    );
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    parse_metric(&sql, &defaults).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn compiled(plan: &MetricPlan) -> (Compiled, Vec<Slot>) {
    let fields = plan.fields();
    let paths: Vec<Vec<&str>> = fields.iter().map(|f| f.json_path()).collect();
    let set = FieldSet::new(&paths);
    let mut slots = Vec::new();
    set.scan(EVENT.as_bytes(), &mut slots).unwrap();
    let compiled = Compiled::new(plan, |field| {
        fields.iter().position(|f| f == field).unwrap()
    });
    (compiled, slots)
}

fn passes(filter: &str) -> bool {
    let plan = plan("COUNT(*)", filter);
    let (compiled, slots) = compiled(&plan);
    compiled.matches(EVENT.as_bytes(), &slots)
}

#[test]
fn filters_follow_the_typing_rules() {
    let truths = [
        "event = 'Order Completed'",
        "type IN ('page', 'track')",
        "properties.revenue > 19.9 AND properties.revenue <= 19.99",
        "properties.price = 12.5",
        "properties.price > 9",
        "properties.url LIKE '/H%'",
        "properties.url LIKE '/_ome'",
        "properties.name LIKE 'caf_'",
        "properties.name = 'café'",
        "properties.coupon IS NULL",
        "properties.tags IS NULL",
        "properties.missing IS NULL",
        "user_id IS NOT NULL",
        "properties.ok = TRUE",
        "NOT (event = 'x')",
        "event = 'x' OR timestamp >= 1714564740000",
        "lower(properties.url) = '/home'",
        "upper(properties.url) = '/HOME'",
        "coalesce(properties.coupon, properties.url) = '/Home'",
        "properties.revenue NOT IN (1, 2)",
        "properties.revenue LIKE '19.%'",
        "context.campaign.source = 'Google'",
    ];
    for filter in truths {
        assert!(passes(filter), "{filter} should be TRUE");
    }
    let not_true = [
        "event = 'Page Viewed'",
        "properties.missing = 'x'",
        "NOT (properties.missing = 'x')",
        "properties.url > 5",
        "properties.ok = 'true'",
        "properties.missing IN ('a', 'b')",
        "properties.revenue NOT IN (1, NULL)",
        "properties.url LIKE 'Home'",
        "properties.coupon IS NOT NULL",
        "properties.missing = 'x' AND TRUE",
        "properties.missing = 'x' OR FALSE",
    ];
    for filter in not_true {
        assert!(!passes(filter), "{filter} should not be TRUE");
    }
    assert!(passes("properties.missing = 'x' OR TRUE"));
    assert!(!passes("properties.missing = 'x' AND FALSE"));
}

#[test]
fn aggregate_inputs_are_typed_on_use() {
    let plan = plan(
        "COUNT(*), COUNT(properties.coupon), COUNT(properties.url), SUM(properties.price), \
         AVG(properties.url), COUNT(DISTINCT properties.revenue)",
        "TRUE",
    );
    let (compiled, slots) = compiled(&plan);
    let mut inputs = Vec::new();
    compiled.inputs(EVENT.as_bytes(), &slots, 0, &mut inputs);
    assert_eq!(inputs[0], Input::Present);
    assert_eq!(inputs[1], Input::Null, "null is not counted");
    assert_eq!(inputs[2], Input::Present);
    assert_eq!(
        inputs[3],
        Input::Number(Decimal::parse_str("12.5").unwrap()),
        "numeric strings sum"
    );
    assert_eq!(inputs[4], Input::Null, "text does not average");
    let expected = distinct_hash(&Value::Number(Decimal::parse_str("19.990").unwrap())).unwrap();
    assert_eq!(inputs[5], Input::Hash(expected));
}

#[test]
fn group_keys_encode_the_evaluated_values() {
    let sql = "CREATE METRIC m AS SELECT lower(context.campaign.source) AS source, properties.missing AS m, COUNT(*) FROM events GROUP BY source, m, TUMBLE(timestamp, INTERVAL '1' MINUTE)";
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    let keyed = parse_metric(sql, &defaults).unwrap();
    let (compiled, slots) = compiled(&keyed);
    let mut out = Vec::new();
    crate::keys::encode_text(b"shop", &mut out);
    compiled.encode_key(EVENT.as_bytes(), &slots, &mut out);
    let key = crate::keys::GroupKey::from_bytes(&out).unwrap();
    assert_eq!(key.to_string(), "shop \"google\" NULL");
}

#[test]
fn like_patterns_backtrack_correctly() {
    let cases = [
        ("%", "", true),
        ("%", "abc", true),
        ("a%c", "abbbc", true),
        ("a%c", "abbbd", false),
        ("%b%b%", "abxbz", true),
        ("%b%b%", "abx", false),
        ("_", "é", true),
        ("__", "é", false),
        ("%.html", "/x/index.html", true),
        ("a_c%", "abcdef", true),
        ("", "", true),
        ("", "a", false),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            like(&compile_like(pattern), text),
            expected,
            "{text:?} LIKE {pattern:?}"
        );
    }
}
