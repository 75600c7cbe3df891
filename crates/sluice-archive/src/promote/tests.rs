use super::*;
use crate::format::{Fields, Rows};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use sluice_core::event::Event;

fn column(tenant: Option<&str>, path: &str, name: Option<&str>, kind: &str) -> ColumnConfig {
    ColumnConfig {
        tenant: tenant.map(str::to_owned),
        path: path.to_owned(),
        name: name.map(str::to_owned),
        kind: kind.to_owned(),
    }
}

#[test]
fn entries_are_checked_with_what_to_fix() {
    let good = column(None, "properties.Revenue", None, "decimal(12, 2)")
        .parse()
        .unwrap();
    assert_eq!(good.name, "revenue", "the last key, lower-cased");
    assert_eq!(
        good.kind,
        Kind::Decimal {
            precision: 12,
            scale: 2
        }
    );
    for (entry, says) in [
        (
            column(None, "revenue", None, "double"),
            "must start with properties.",
        ),
        (
            column(None, "event.x", None, "double"),
            "must start with properties.",
        ),
        (
            column(None, "properties..x", None, "double"),
            "non-empty keys",
        ),
        (
            column(None, "properties.x", Some("9x"), "double"),
            "not starting with a digit",
        ),
        (
            column(None, "properties.event", None, "string"),
            "is taken by a column every file has",
        ),
        (column(None, "properties.hour", None, "bigint"), "is taken"),
        (
            column(None, "properties.x", None, "int"),
            "is not one of string, bigint",
        ),
        (
            column(None, "properties.x", None, "decimal(39,2)"),
            "p 1 to 38",
        ),
        (
            column(None, "properties.x", None, "decimal(4,5)"),
            "s 0 to p",
        ),
    ] {
        let problem = entry.parse().unwrap_err();
        assert!(problem.contains(says), "{entry:?}: {problem}");
    }

    let configs = [
        column(None, "properties.revenue", None, "double"),
        column(Some("shop"), "properties.total.revenue", None, "double"),
        column(Some("blog"), "context.page.path", Some("path"), "string"),
        column(Some("shop"), "context.page.path", Some("path"), "string"),
        column(Some("Bad"), "properties.x", None, "string"),
    ];
    let problems = Promotions::problems(&configs);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, 1);
    assert!(
        problems[0]
            .1
            .contains("\"revenue\" is already columns[0]'s"),
        "{problems:?}"
    );
    assert_eq!(problems[1].0, 4);
    assert!(
        problems[1].1.contains("not a valid tenant name"),
        "{problems:?}"
    );
    assert!(
        Promotions::problems(&configs[2..4]).is_empty(),
        "one path per tenant"
    );
}

fn batch(configs: &[ColumnConfig], tenant: &str, events: &[&str]) -> RecordBatch {
    let promotions = Promotions::new(configs);
    let mut rows = Rows::new(promotions.of(tenant));
    for (offset, json) in events.iter().enumerate() {
        let event: Event<'_> = serde_json::from_str(json).unwrap();
        rows.push(0, offset as u64, &Fields::of(&event));
    }
    rows.finish()
}

/// Typed values from properties, context and traits; missing, null or mistyped ones are NULL;
/// another tenant's files get only the every-tenant columns.
#[test]
fn values_become_typed_columns_and_the_rest_null() {
    let configs = [
        column(None, "properties.revenue", None, "decimal(12,2)"),
        column(Some("shop"), "properties.count", None, "bigint"),
        column(Some("shop"), "properties.ratio", None, "double"),
        column(Some("shop"), "properties.ok", None, "boolean"),
        column(Some("shop"), "properties.at", None, "timestamp"),
        column(Some("shop"), "context.page.path", None, "string"),
        column(Some("shop"), "traits.plan", None, "string"),
    ];
    let base = r#""message_id":"m","tenant":"shop","type":"track","event":"E","anonymous_id":"a","timestamp":1,"received_at":1"#;
    let events = [
        format!(
            r#"{{{base},"properties":{{"revenue":12.345,"count":7,"ratio":0.5,"ok":true,"at":"2026-12-07T13:00:00Z"}},"context":{{"page":{{"path":"/p"}}}},"traits":{{"plan":"pro"}}}}"#
        ),
        format!(
            r#"{{{base},"properties":{{"revenue":"-3.005","count":"8","ratio":"2","ok":"false","at":1796648400000}},"traits":{{"plan":7}}}}"#
        ),
        format!(
            r#"{{{base},"properties":{{"revenue":"x","count":1.5,"ratio":"NaN","ok":1,"at":"yesterday"}},"context":{{"page":"/flat"}}}}"#
        ),
        format!(r#"{{{base},"properties":{{"revenue":1e15,"count":null}}}}"#),
        format!(r#"{{{base}}}"#),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let shop = batch(&configs, "shop", &events);
    assert_eq!(shop.num_columns(), format::schema().fields().len() + 7);

    let revenue = shop["revenue"].as_primitive::<Decimal128Type>();
    assert_eq!(
        revenue.data_type(),
        &arrow_schema::DataType::Decimal128(12, 2)
    );
    let revenues: Vec<Option<i128>> = revenue.iter().collect();
    assert_eq!(
        revenues,
        [Some(1235), Some(-301), None, None, None],
        "1e15 has 18 digits at scale 2"
    );
    let counts: Vec<Option<i64>> = shop["count"].as_primitive::<Int64Type>().iter().collect();
    assert_eq!(counts, [Some(7), Some(8), None, None, None]);
    let ratios: Vec<Option<f64>> = shop["ratio"].as_primitive::<Float64Type>().iter().collect();
    assert_eq!(ratios, [Some(0.5), Some(2.0), None, None, None]);
    let oks: Vec<Option<bool>> = shop["ok"].as_boolean().iter().collect();
    assert_eq!(oks, [Some(true), Some(false), None, None, None]);
    let at = shop["at"].as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        at.data_type(),
        &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, Some("UTC".into()))
    );
    let ats: Vec<Option<i64>> = at.iter().collect();
    assert_eq!(
        ats,
        [
            Some(1_796_648_400_000),
            Some(1_796_648_400_000),
            None,
            None,
            None
        ]
    );
    let paths: Vec<Option<&str>> = shop["path"].as_string::<i32>().iter().collect();
    assert_eq!(paths, [Some("/p"), None, None, None, None]);
    let plans: Vec<Option<&str>> = shop["plan"].as_string::<i32>().iter().collect();
    assert_eq!(plans, [Some("pro"), Some("7"), None, None, None]);

    // Keys with escapes are unescaped before matching, and of a key written twice the first
    // counts (as in metrics: `p\u0061th` is `path`); an object in place of a scalar is NULL.
    let escaped = batch(
        &configs,
        "shop",
        &[&format!(
            r#"{{{base},"properties":{{"n\u0061me":"x","revenue":1,"count":{{"a":1}}}},"context":{{"page":{{"p\u0061th":"/q","path":"/p"}}}}}}"#
        )],
    );
    assert_eq!(
        escaped["revenue"].as_primitive::<Decimal128Type>().value(0),
        100
    );
    assert!(escaped["count"].is_null(0));
    assert_eq!(escaped["path"].as_string::<i32>().value(0), "/q");

    let blog = batch(&configs, "blog", &events[..1]);
    assert_eq!(blog.num_columns(), format::schema().fields().len() + 1);
    assert_eq!(
        blog["revenue"].as_primitive::<Decimal128Type>().value(0),
        1235
    );
}

#[test]
fn decimals_round_half_away_from_zero_within_their_precision() {
    assert_eq!(decimal("12.345", 12, 2), Some(1235));
    assert_eq!(decimal("12.344", 12, 2), Some(1234));
    assert_eq!(decimal("-12.345", 12, 2), Some(-1235));
    assert_eq!(decimal("+7", 4, 2), Some(700));
    assert_eq!(decimal(".5", 4, 0), Some(1));
    assert_eq!(decimal("99.99", 4, 2), Some(9999));
    assert_eq!(decimal("100", 4, 2), None, "5 digits");
    assert_eq!(decimal("99.995", 4, 2), None, "rounds to 5 digits");
    assert_eq!(decimal("1.5e3", 10, 1), Some(15000));
    assert_eq!(decimal("1e40", 38, 0), None);
    for bad in ["", "-", ".", "1.2.3", "1,5", "12a", "NaN"] {
        assert_eq!(decimal(bad, 10, 2), None, "{bad:?}");
    }
}

/// A `string` column keeps numbers and booleans as their JSON text as sent (`1.50` stays
/// `1.50`), unescapes strings, and two columns of one path (of different types) both read it.
#[test]
fn string_columns_keep_the_json_text_and_columns_may_share_a_path() {
    let configs = [
        column(None, "properties.amount", Some("amount_text"), "string"),
        column(None, "properties.amount", Some("amount"), "decimal(6,2)"),
        column(None, "properties.flag", None, "string"),
        column(None, "properties.label", None, "string"),
    ];
    let base = r#""message_id":"m","tenant":"shop","type":"track","event":"E","anonymous_id":"a","timestamp":1,"received_at":1"#;
    let events = [
        format!(
            r#"{{{base},"properties":{{"amount":1.50,"flag":true,"label":"caf\u00e9 \"x\""}}}}"#
        ),
        format!(r#"{{{base},"properties":{{"label":"plain","amount":"2.255","flag":null}}}}"#),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let batch = batch(&configs, "shop", &events);
    let text = |name: &str| -> Vec<Option<String>> {
        batch[name]
            .as_string::<i32>()
            .iter()
            .map(|value| value.map(str::to_owned))
            .collect()
    };
    assert_eq!(
        text("amount_text"),
        [Some("1.50".to_owned()), Some("2.255".to_owned())]
    );
    let amounts: Vec<Option<i128>> = batch["amount"]
        .as_primitive::<Decimal128Type>()
        .iter()
        .collect();
    assert_eq!(amounts, [Some(150), Some(226)]);
    assert_eq!(text("flag"), [Some("true".to_owned()), None]);
    assert_eq!(
        text("label"),
        [Some("café \"x\"".to_owned()), Some("plain".to_owned())]
    );
}
