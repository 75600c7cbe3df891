//! The collector's cost of validation per event: a typical `track` event of 10 properties
//! against its subject's JSON Schema (types, bounds, a pattern, an enum, required fields), as
//! `Validators::check` does it for every event (parse the properties, walk the schema).
//!
//! `cargo bench -p sluice-schema --bench validate`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use sluice_core::EventType;
use sluice_schema::validate::{Defaults, Validators, Verdict};
use sluice_schema::{Registry, SchemaType, SchemaVersion, SubjectConfig, ValidationMode};
use std::hint::black_box;

// The allocator of the sluice binary, so parsing the properties costs here what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCHEMA: &str = r#"{"type": "object", "additionalProperties": false,
  "required": ["order_id", "revenue", "currency", "products"],
  "properties": {
    "order_id": {"type": "string", "minLength": 1, "maxLength": 64},
    "revenue": {"type": "number", "minimum": 0},
    "tax": {"type": "number", "minimum": 0},
    "shipping": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "coupon": {"type": ["string", "null"]},
    "affiliation": {"type": "string"},
    "discount": {"type": "number"},
    "payment": {"enum": ["card", "paypal", "transfer"]},
    "products": {"type": "array", "maxItems": 100, "items": {"type": "string"}}
  }}"#;

const PROPERTIES: &str = r#"{"order_id":"50314b8e9bcf000000000000","revenue":25.5,"tax":2.1,"shipping":3.0,"currency":"EUR","coupon":null,"affiliation":"Google Store","discount":2.5,"payment":"card","products":["507f1f77bcf86cd799439011","505bd76785ebb509fc183733"]}"#;

fn validators() -> Validators {
    let version = SchemaVersion {
        id: 1,
        tenant: "shop".into(),
        subject: "Order Completed-value".into(),
        version: 1,
        schema_type: SchemaType::Json,
        schema: SCHEMA.into(),
        deleted: false,
    };
    let settings = SubjectConfig {
        tenant: "shop".into(),
        validation: Some(ValidationMode::Enforce),
        ..SubjectConfig::default()
    };
    let registry = Registry::new(vec![version], vec![settings], Default::default());
    Validators::build(&registry, Defaults::default(), None)
}

fn validate(c: &mut Criterion) {
    let validators = validators();
    let valid: Box<RawValue> = serde_json::from_str(PROPERTIES).unwrap();
    let invalid: Box<RawValue> =
        serde_json::from_str(&PROPERTIES.replace("\"EUR\"", "\"euro\"")).unwrap();
    assert_eq!(
        validators.check(
            "shop",
            EventType::Track,
            Some("Order Completed"),
            Some(&valid)
        ),
        Verdict::Pass
    );
    assert!(matches!(
        validators.check(
            "shop",
            EventType::Track,
            Some("Order Completed"),
            Some(&invalid)
        ),
        Verdict::Reject { .. }
    ));
    let mut group = c.benchmark_group("validate");
    group.bench_function("parse the properties only", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(valid.get())).unwrap())
    });
    group.bench_function("valid 10-property event", |b| {
        b.iter(|| {
            validators.check(
                black_box("shop"),
                EventType::Track,
                Some(black_box("Order Completed")),
                Some(black_box(&valid)),
            )
        })
    });
    group.bench_function("invalid event, violations listed", |b| {
        b.iter(|| {
            validators.check(
                black_box("shop"),
                EventType::Track,
                Some(black_box("Order Completed")),
                Some(black_box(&invalid)),
            )
        })
    });
    group.bench_function("tenant without schemas", |b| {
        b.iter(|| {
            validators.check(
                black_box("blog"),
                EventType::Track,
                Some(black_box("Order Completed")),
                Some(black_box(&valid)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
