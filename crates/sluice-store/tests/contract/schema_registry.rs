//! The schema registry's part of the store contract: versions, ids, deletes and settings.

use sluice_schema::{Compatibility, SchemaType, SubjectConfig, UnknownEvents, ValidationMode};
use sluice_store::{StoreBackend, StoreError};

pub(crate) async fn schema_versions_ids_deletes_and_settings_round_trip(store: &StoreBackend) {
    let order_v1 = r#"{"type":"object"}"#;
    let order_v2 = r#"{"properties":{"revenue":{"type":"number"}},"type":"object"}"#;
    let v1 = store
        .add_schema_version(
            "shop",
            "Order Completed-value",
            SchemaType::Json,
            order_v1,
            None,
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v1.deleted), (1, false));
    let error = store
        .add_schema_version(
            "shop",
            "Order Completed-value",
            SchemaType::Json,
            order_v2,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    let v2 = store
        .add_schema_version(
            "shop",
            "Order Completed-value",
            SchemaType::Json,
            order_v2,
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.id, v1.id);
    // The same text under another subject of the tenant has the same id; in another tenant,
    // or as another type, it has its own.
    let same = store
        .add_schema_version("shop", "orders-value", SchemaType::Json, order_v2, None)
        .await
        .unwrap();
    assert_eq!(same.id, v2.id);
    let other_tenant = store
        .add_schema_version("blog", "orders-value", SchemaType::Json, order_v2, None)
        .await
        .unwrap();
    assert_ne!(other_tenant.id, v2.id);

    // Soft, then permanent deletes; version numbers are never reused, ids never either.
    let soft = store
        .delete_schema_versions("shop", "Order Completed-value", Some(2), false)
        .await
        .unwrap();
    assert_eq!(soft, [2]);
    let again = store
        .delete_schema_versions("shop", "Order Completed-value", Some(2), false)
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a soft-deleted version is not deleted twice"
    );
    let v3 = store
        .add_schema_version(
            "shop",
            "Order Completed-value",
            SchemaType::Json,
            order_v2,
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!((v3.version, v3.id), (3, v2.id));
    assert_eq!(
        store
            .delete_schema_versions("shop", "orders-value", None, true)
            .await
            .unwrap(),
        Vec::<u32>::new(),
        "a permanent delete removes only what was soft-deleted"
    );
    store
        .set_schema_settings(
            "shop",
            "orders-value",
            Some(SubjectConfig {
                tenant: "shop".into(),
                subject: "orders-value".into(),
                compatibility: Some(Compatibility::None),
                ..SubjectConfig::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_schema_versions("shop", "orders-value", None, false)
            .await
            .unwrap(),
        [1]
    );
    assert_eq!(
        store
            .delete_schema_versions("shop", "orders-value", None, true)
            .await
            .unwrap(),
        [1]
    );
    let fresh = store
        .add_schema_version("shop", "fresh-value", SchemaType::Avro, r#""string""#, None)
        .await
        .unwrap();
    assert!(fresh.id > other_tenant.id, "ids are never reused");

    store
        .set_schema_settings(
            "shop",
            "",
            Some(SubjectConfig {
                tenant: "shop".into(),
                subject: String::new(),
                compatibility: Some(Compatibility::FullTransitive),
                validation: Some(ValidationMode::Enforce),
                unknown_events: Some(UnknownEvents::Reject),
            }),
        )
        .await
        .unwrap();
    let (versions, settings) = store.schema_registry().await.unwrap();
    let listed: Vec<(&str, &str, u32, bool)> = versions
        .iter()
        .map(|v| (v.tenant.as_str(), v.subject.as_str(), v.version, v.deleted))
        .collect();
    assert_eq!(
        listed,
        [
            ("blog", "orders-value", 1, false),
            ("shop", "Order Completed-value", 1, false),
            ("shop", "Order Completed-value", 2, true),
            ("shop", "Order Completed-value", 3, false),
            ("shop", "fresh-value", 1, false),
        ]
    );
    assert_eq!(versions[3].schema, order_v2);
    assert_eq!(versions[4].schema_type, SchemaType::Avro);
    assert_eq!(
        settings,
        [SubjectConfig {
            tenant: "shop".into(),
            subject: String::new(),
            compatibility: Some(Compatibility::FullTransitive),
            validation: Some(ValidationMode::Enforce),
            unknown_events: Some(UnknownEvents::Reject),
        }],
        "the deleted subject's settings went with its last version"
    );
    store.set_schema_settings("shop", "", None).await.unwrap();
    assert!(store.schema_registry().await.unwrap().1.is_empty());
}
