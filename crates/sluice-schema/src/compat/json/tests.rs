//! Every rule in both directions, the bounds, and a property: any schema is compatible with
//! itself re-annotated, at every level.

use crate::compat::{Incompatibility, check};
use crate::model::{Compatibility, ParsedSchema};
use proptest::prelude::*;
use serde_json::{Value, json};

/// (rule, path) of each incompatibility of `new` after `old` in one direction.
fn found(level: Compatibility, old: &Value, new: &Value) -> Vec<(&'static str, String)> {
    let (old, new) = (
        ParsedSchema::Json(old.clone()),
        ParsedSchema::Json(new.clone()),
    );
    check(level, &new, &[(1, &old)])
        .into_iter()
        .map(|Incompatibility { rule, path, .. }| (rule, path))
        .collect()
}

/// One change: the schemas, then what backward and forward report.
struct Case {
    name: &'static str,
    old: Value,
    new: Value,
    backward: &'static [(&'static str, &'static str)],
    forward: &'static [(&'static str, &'static str)],
}

fn case(
    name: &'static str,
    old: Value,
    new: Value,
    backward: &'static [(&'static str, &'static str)],
    forward: &'static [(&'static str, &'static str)],
) -> Case {
    Case {
        name,
        old,
        new,
        backward,
        forward,
    }
}

const OK: &[(&str, &str)] = &[];

fn object(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

fn closed(properties: Value) -> Value {
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn tagged(tag: &str) -> Value {
    json!({"type": "object", "properties": {"kind": {"const": tag}}, "required": ["kind"]})
}

// One case a line or two, as a table: rustfmt would spread each over ten.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let s = || json!({"type": "string"});
    let i = || json!({"type": "integer"});
    vec![
        // Types.
        case("integer widened to number", i(), json!({"type": "number"}), OK, &[("TYPE_NARROWED", "#")]),
        case("string to integer", s(), i(), &[("TYPE_CHANGED", "#")], &[("TYPE_CHANGED", "#")]),
        case("null dropped from a type list", json!({"type": ["string", "null"]}), s(), &[("TYPE_NARROWED", "#")], OK),
        case("true to a type", json!(true), s(), &[("TYPE_NARROWED", "#")], OK),
        case("to false", s(), json!(false), &[("TYPE_CHANGED", "#")], OK),
        case("annotations only", json!({"type": "string", "title": "a", "description": "b"}),
            json!({"type": "string", "title": "c", "examples": ["x"], "default": "y", "$comment": "z"}), OK, OK),
        // Enumerations.
        case("enum extended", json!({"enum": ["a", "b"]}), json!({"enum": ["a", "b", "c"]}), OK, &[("ENUM_ARRAY_NARROWED", "#/enum")]),
        case("enum changed", json!({"enum": ["a", "b"]}), json!({"enum": ["a", "c"]}),
            &[("ENUM_ARRAY_CHANGED", "#/enum")], &[("ENUM_ARRAY_CHANGED", "#/enum")]),
        case("enum added", s(), json!({"type": "string", "enum": ["a"]}), &[("ENUM_ARRAY_NARROWED", "#/enum")], OK),
        case("const changed", json!({"const": 1}), json!({"const": 2.0}),
            &[("ENUM_ARRAY_CHANGED", "#/const")], &[("ENUM_ARRAY_CHANGED", "#/const")]),
        case("const equals by value", json!({"const": 1}), json!({"enum": [1.0, 2]}), OK, &[("ENUM_ARRAY_NARROWED", "#/const")]),
        case("boolean to enum of both", json!({"type": "boolean"}), json!({"enum": [true, false]}), OK, OK),
        // Numbers.
        case("minimum increased", json!({"type": "number", "minimum": 0}), json!({"type": "number", "minimum": 5}),
            &[("MINIMUM_INCREASED", "#/minimum")], OK),
        case("minimum added", json!({"type": "number"}), json!({"type": "number", "minimum": 0}), &[("MINIMUM_ADDED", "#/minimum")], OK),
        case("maximum decreased", json!({"type": "number", "maximum": 10}), json!({"type": "number", "maximum": 5}),
            &[("MAXIMUM_DECREASED", "#/maximum")], OK),
        case("inclusive to exclusive minimum", json!({"type": "number", "minimum": 0}), json!({"type": "number", "exclusiveMinimum": 0}),
            &[("EXCLUSIVE_MINIMUM_INCREASED", "#/exclusiveMinimum")], OK),
        case("exclusive maximum added", json!({"type": "number"}), json!({"type": "number", "exclusiveMaximum": 100}),
            &[("EXCLUSIVE_MAXIMUM_ADDED", "#/exclusiveMaximum")], OK),
        case("draft-4 exclusive minimum", json!({"type": "number", "minimum": 0}),
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}), &[("MINIMUM_INCREASED", "#/minimum")], OK),
        case("multipleOf expanded", json!({"type": "number", "multipleOf": 2}), json!({"type": "number", "multipleOf": 4}),
            &[("MULTIPLE_OF_EXPANDED", "#/multipleOf")], OK),
        case("multipleOf changed", json!({"type": "number", "multipleOf": 2}), json!({"type": "number", "multipleOf": 3}),
            &[("MULTIPLE_OF_CHANGED", "#/multipleOf")], &[("MULTIPLE_OF_CHANGED", "#/multipleOf")]),
        case("multipleOf added", i(), json!({"type": "integer", "multipleOf": 3}), &[("MULTIPLE_OF_ADDED", "#/multipleOf")], OK),
        case("integers are multiples of 1", i(), json!({"type": "integer", "multipleOf": 1}), OK, OK),
        // Strings.
        case("maxLength decreased", json!({"type": "string", "maxLength": 10}), json!({"type": "string", "maxLength": 5}),
            &[("MAX_LENGTH_DECREASED", "#/maxLength")], OK),
        case("maxLength added", s(), json!({"type": "string", "maxLength": 5}), &[("MAX_LENGTH_ADDED", "#/maxLength")], OK),
        case("minLength added", s(), json!({"type": "string", "minLength": 1}), &[("MIN_LENGTH_ADDED", "#/minLength")], OK),
        case("minLength increased", json!({"type": "string", "minLength": 1}), json!({"type": "string", "minLength": 2}),
            &[("MIN_LENGTH_INCREASED", "#/minLength")], OK),
        case("pattern added", s(), json!({"type": "string", "pattern": "^a"}), &[("PATTERN_ADDED", "#/pattern")], OK),
        case("pattern changed", json!({"type": "string", "pattern": "^a"}), json!({"type": "string", "pattern": "^b"}),
            &[("PATTERN_CHANGED", "#/pattern")], &[("PATTERN_CHANGED", "#/pattern")]),
        case("format added", s(), json!({"type": "string", "format": "email"}), &[("FORMAT_ADDED", "#/format")], OK),
        case("enum values within maxLength", json!({"enum": ["ab", "abc"]}), json!({"type": "string", "maxLength": 3}),
            OK, &[("ENUM_ARRAY_NARROWED", "#/enum")]),
        case("enum value past maxLength", json!({"enum": ["ab", "abc"]}), json!({"type": "string", "maxLength": 2}),
            &[("MAX_LENGTH_DECREASED", "#/maxLength")], &[("ENUM_ARRAY_NARROWED", "#/enum")]),
        case("string keywords ignored for numbers", i(), json!({"type": ["integer", "string"], "maxLength": 2}), OK,
            &[("TYPE_NARROWED", "#")]),
        // Arrays.
        case("items widened", json!({"type": "array", "items": i()}), json!({"type": "array", "items": {"type": "number"}}),
            OK, &[("TYPE_NARROWED", "#/items")]),
        case("items added", json!({"type": "array"}), json!({"type": "array", "items": s()}), &[("SCHEMA_ADDED", "#/items")], OK),
        case("minItems added", json!({"type": "array"}), json!({"type": "array", "minItems": 1}), &[("MIN_ITEMS_ADDED", "#/minItems")], OK),
        case("maxItems decreased", json!({"type": "array", "maxItems": 3}), json!({"type": "array", "maxItems": 2}),
            &[("MAX_ITEMS_DECREASED", "#/maxItems")], OK),
        case("uniqueItems added", json!({"type": "array"}), json!({"type": "array", "uniqueItems": true}),
            &[("UNIQUE_ITEMS_ADDED", "#/uniqueItems")], OK),
        case("item added to a closed tuple", json!({"type": "array", "prefixItems": [s()], "items": false}),
            json!({"type": "array", "prefixItems": [s(), i()], "items": false}), OK,
            &[("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/prefixItems/1")]),
        case("item added to an open tuple", json!({"type": "array", "prefixItems": [s()]}),
            json!({"type": "array", "prefixItems": [s(), i()]}), &[("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "#/prefixItems/1")], OK),
        case("item added to a partially open tuple", json!({"type": "array", "prefixItems": [s()], "items": i()}),
            json!({"type": "array", "prefixItems": [s(), {"type": "number"}], "items": i()}), OK,
            &[("ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "#/prefixItems/1")]),
        case("additionalItems closed (draft 7)", json!({"type": "array", "items": [s()]}),
            json!({"type": "array", "items": [s()], "additionalItems": false}), &[("ADDITIONAL_ITEMS_REMOVED", "#/additionalItems")], OK),
        // Objects.
        case("property removed from a closed model", closed(json!({"a": s(), "b": i()})), closed(json!({"a": s()})),
            &[("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/b")], OK),
        case("property removed from an open model", object(json!({"a": s(), "b": i()})), object(json!({"a": s()})),
            OK, &[("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "#/properties/b")]),
        case("property with {} added to an open model", object(json!({"a": s()})), object(json!({"a": s(), "b": {}})), OK, OK),
        case("optional property added to a closed model", closed(json!({"a": s()})), closed(json!({"a": s(), "b": s()})),
            OK, &[("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/b")]),
        case("required property added to a closed model", closed(json!({"a": s()})),
            json!({"type": "object", "properties": {"a": s(), "b": s()}, "required": ["b"], "additionalProperties": false}),
            &[("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "#/properties/b")],
            &[("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/b")]),
        case("required property with {} added to an open model", object(json!({"a": s()})),
            json!({"type": "object", "properties": {"a": s(), "b": {}}, "required": ["b"]}),
            &[("REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "#/properties/b")], OK),
        case("existing property made required", object(json!({"a": s()})),
            json!({"type": "object", "properties": {"a": s()}, "required": ["a"]}), &[("REQUIRED_ATTRIBUTE_ADDED", "#/required/a")], OK),
        case("required with a default is still required", object(json!({"a": s()})),
            json!({"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "required": ["a"]}),
            &[("REQUIRED_ATTRIBUTE_ADDED", "#/required/a")], OK),
        case("property added, covered by additionalProperties",
            json!({"type": "object", "properties": {"a": s()}, "additionalProperties": s()}),
            json!({"type": "object", "properties": {"a": s(), "b": s()}, "additionalProperties": s()}), OK, OK),
        case("property added, not covered by additionalProperties",
            json!({"type": "object", "properties": {"a": s()}, "additionalProperties": s()}),
            json!({"type": "object", "properties": {"a": s(), "b": i()}, "additionalProperties": s()}),
            &[("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "#/properties/b")],
            &[("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "#/properties/b")]),
        case("property `false` removed from a closed model", closed(json!({"a": s(), "x": false})), closed(json!({"a": s()})), OK, OK),
        case("additionalProperties closed", json!({"type": "object"}), json!({"type": "object", "additionalProperties": false}),
            &[("ADDITIONAL_PROPERTIES_REMOVED", "#/additionalProperties")], OK),
        case("additionalProperties narrowed", json!({"type": "object"}), json!({"type": "object", "additionalProperties": s()}),
            &[("ADDITIONAL_PROPERTIES_NARROWED", "#/additionalProperties")], OK),
        case("additionalProperties schema widened", json!({"type": "object", "additionalProperties": i()}),
            json!({"type": "object", "additionalProperties": {"type": "number"}}), OK, &[("TYPE_NARROWED", "#/additionalProperties")]),
        case("minProperties added", json!({"type": "object"}), json!({"type": "object", "minProperties": 1}),
            &[("MIN_PROPERTIES_ADDED", "#/minProperties")], OK),
        case("maxProperties decreased", json!({"type": "object", "maxProperties": 5}), json!({"type": "object", "maxProperties": 3}),
            &[("MAX_PROPERTIES_DECREASED", "#/maxProperties")], OK),
        case("dependentRequired added", json!({"type": "object"}), json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
            &[("DEPENDENCY_ARRAY_ADDED", "#/dependentRequired/a")], OK),
        case("dependentRequired extended", json!({"type": "object", "dependentRequired": {"a": ["b"]}}),
            json!({"type": "object", "dependentRequired": {"a": ["b", "c"]}}), &[("DEPENDENCY_ARRAY_EXTENDED", "#/dependentRequired/a")], OK),
        case("dependentSchemas added", json!({"type": "object"}), json!({"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}),
            &[("DEPENDENCY_SCHEMA_ADDED", "#/dependentSchemas/a")], OK),
        case("patternProperties added", json!({"type": "object"}),
            json!({"type": "object", "patternProperties": {"^x": s()}}), &[("UNSUPPORTED_KEYWORD_CHANGED", "#/patternProperties")], OK),
        case("nested property narrowed", object(json!({"user": object(json!({"age": {"type": "number"}}))})),
            object(json!({"user": object(json!({"age": i()}))})), &[("TYPE_NARROWED", "#/properties/user/properties/age")], OK),
        case("unknown keyword added", json!({"type": "object"}), json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            &[("UNSUPPORTED_KEYWORD_CHANGED", "#/propertyNames")], OK),
        // Combinators.
        case("anyOf extended", json!({"anyOf": [s(), i()]}), json!({"anyOf": [s(), i(), {"type": "boolean"}]}),
            OK, &[("COMBINED_TYPE_SUBSCHEMAS_CHANGED", "#/anyOf/2")]),
        case("oneOf of disjoint types", s(), json!({"oneOf": [s(), i()]}), OK, &[("TYPE_CHANGED", "#/oneOf/1")]),
        case("oneOf with overlapping branches", s(), json!({"oneOf": [s(), {"type": "string", "maxLength": 5}]}),
            &[("ONE_OF_BRANCHES_OVERLAP", "#/oneOf/1")], OK),
        case("oneOf with a discriminator extended", json!({"oneOf": [tagged("a"), tagged("b")]}),
            json!({"oneOf": [tagged("a"), tagged("b"), tagged("c")]}), OK, &[("COMBINED_TYPE_SUBSCHEMAS_CHANGED", "#/oneOf/2")]),
        case("allOf merged into one schema", json!({"allOf": [object(json!({"a": s()})), {"required": ["a"]}]}),
            json!({"type": "object", "properties": {"a": s()}, "required": ["a"]}), OK, OK),
        case("allOf conjunct added", s(), json!({"allOf": [s(), {"maxLength": 3}]}), &[("MAX_LENGTH_ADDED", "#/allOf/1/maxLength")], OK),
        case("not of a disjoint type", s(), json!({"not": i()}), OK, &[("TYPE_NARROWED", "#")]),
        case("not excluding accepted values", s(), json!({"type": "string", "not": {"enum": ["x"]}}),
            &[("NOT_TYPE_EXTENDED", "#/not")], OK),
        // References.
        case("referenced definition narrowed",
            json!({"$defs": {"money": {"type": "number"}}, "type": "object", "properties": {"price": {"$ref": "#/$defs/money"}}}),
            json!({"$defs": {"money": {"type": "integer"}}, "type": "object", "properties": {"price": {"$ref": "#/$defs/money"}}}),
            &[("TYPE_NARROWED", "#/properties/price")], OK),
        case("definitions and anchors", json!({"definitions": {"n": {"$anchor": "num", "type": "integer"}}, "$ref": "#/definitions/n"}),
            json!({"$defs": {"n": {"$anchor": "num", "type": "number"}}, "$ref": "#num"}), OK, &[("TYPE_NARROWED", "#")]),
        case("unresolved reference", json!({"$ref": "#/$defs/missing"}), s(), &[("UNRESOLVED_REFERENCE", "#")], &[("UNRESOLVED_REFERENCE", "#")]),
        case("external reference changed", json!({"$ref": "a.json"}), json!({"$ref": "b.json"}),
            &[("EXTERNAL_REFERENCE_CHANGED", "#/$ref")], &[("EXTERNAL_REFERENCE_CHANGED", "#/$ref")]),
        case("same external reference", json!({"$ref": "a.json", "title": "x"}), json!({"$ref": "a.json"}), OK, OK),
    ]
}

#[test]
fn each_rule_in_both_directions() {
    let mut failures = Vec::new();
    for case in cases() {
        for (level, expected) in [
            (Compatibility::Backward, case.backward),
            (Compatibility::Forward, case.forward),
        ] {
            let got = found(level, &case.old, &case.new);
            let expected: Vec<(&str, String)> =
                expected.iter().map(|(r, p)| (*r, p.to_string())).collect();
            if got != expected {
                failures.push(format!(
                    "{} ({level}): expected {expected:?}, got {got:?}",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn messages_name_both_versions_and_the_fix() {
    let old = closed(json!({"a": {"type": "string"}, "b": {"type": "integer"}}));
    let new = closed(json!({"a": {"type": "string"}}));
    let (old, new) = (ParsedSchema::Json(old), ParsedSchema::Json(new));
    let found = check(Compatibility::Backward, &new, &[(3, &old)]);
    assert_eq!(found.len(), 1);
    let message = &found[0].message;
    assert!(
        message.starts_with("the new schema dropped property `b`"),
        "{message}"
    );
    assert!(message.contains("documents of version 3"), "{message}");
    assert!(message.contains("keep `b` in `properties`"), "{message}");
}

/// A tree of nodes through `$defs`, with `value` of the given type.
fn tree(value: &str) -> Value {
    json!({
        "$defs": {"node": {"type": "object", "properties": {
            "value": {"type": value},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
        }}},
        "$ref": "#/$defs/node"
    })
}

#[test]
fn recursive_schemas_terminate_and_still_find_changes() {
    assert_eq!(
        found(Compatibility::Full, &tree("integer"), &tree("integer")),
        vec![]
    );
    assert_eq!(
        found(Compatibility::Backward, &tree("integer"), &tree("number")),
        vec![]
    );
    assert_eq!(
        found(Compatibility::Forward, &tree("integer"), &tree("number")),
        vec![("TYPE_NARROWED", "#/properties/value".to_string())]
    );
    let cyclic = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
    assert_eq!(
        found(Compatibility::Backward, &cyclic, &json!({"type": "string"})),
        vec![("UNRESOLVED_REFERENCE", "#".to_string())]
    );
}

#[test]
fn identical_overlapping_one_of_with_references_is_compatible() {
    let schema = |note: &str| {
        json!({"$defs": {"s": {"type": "string"}}, "description": note,
               "oneOf": [{"$ref": "#/$defs/s"}, {"type": "string", "maxLength": 3}]})
    };
    assert_eq!(
        found(Compatibility::Full, &schema("v1"), &schema("v2")),
        vec![]
    );
}

#[test]
fn nesting_past_the_depth_bound_is_reported_once() {
    let mut old = json!({"type": "integer"});
    let mut new = json!({"type": "number"});
    for _ in 0..100 {
        old = object(json!({"x": old}));
        new = object(json!({"x": new}));
    }
    let got = found(Compatibility::Full, &old, &new);
    let rules: Vec<&str> = got.iter().map(|(rule, _)| *rule).collect();
    assert_eq!(
        rules,
        vec!["SCHEMA_TOO_DEEP", "SCHEMA_TOO_DEEP"],
        "one per direction: {got:?}"
    );
    assert!(
        got[0].1.starts_with("#/properties/x/properties/x/"),
        "{got:?}"
    );
}

#[test]
fn huge_combinator_cross_products_are_cut_off() {
    let narrow: Vec<Value> = (0..400)
        .map(|i| json!({"type": "integer", "minimum": i}))
        .collect();
    let wide: Vec<Value> = (0..400)
        .map(|i| json!({"type": "string", "maxLength": i}))
        .collect();
    let got = found(
        Compatibility::Backward,
        &json!({"anyOf": narrow}),
        &json!({"anyOf": wide}),
    );
    assert!(got.len() <= 400, "{}", got.len());
    assert_eq!(
        got.last().map(|(rule, _)| *rule),
        Some("SCHEMA_TOO_COMPLEX")
    );
}

/// Schemas from a small grammar: types, bounds, enums, objects (open and closed), arrays and
/// tuples, combinators, and a `$ref` to a definition.
fn schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(true)),
        Just(json!({"type": "string"})),
        Just(json!({"type": "integer", "minimum": 0})),
        Just(json!({"type": ["number", "null"], "exclusiveMaximum": 10})),
        Just(json!({"type": "string", "maxLength": 8, "pattern": "^a"})),
        Just(json!({"enum": ["a", 1, null]})),
        Just(json!({"const": "k"})),
        Just(json!({"$ref": "#/$defs/shared"})),
        Just(json!({"type": "number", "multipleOf": 0.5})),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (
                prop::collection::btree_map("[a-d]", inner.clone(), 0..4),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(properties, closed, require)| {
                    let required: Vec<&String> =
                        properties.keys().take(usize::from(require)).collect();
                    json!({"type": "object", "properties": properties, "required": required,
                           "additionalProperties": !closed})
                }),
            inner
                .clone()
                .prop_map(|items| json!({"type": "array", "items": items, "minItems": 1})),
            prop::collection::vec(inner.clone(), 1..3)
                .prop_map(|tuple| json!({"type": "array", "prefixItems": tuple, "items": false})),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|branches| json!({"anyOf": branches})),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|branches| json!({"oneOf": branches})),
            prop::collection::vec(inner.clone(), 1..3)
                .prop_map(|conjuncts| json!({"allOf": conjuncts})),
            inner.prop_map(|excluded| json!({"type": "string", "not": excluded})),
        ]
    })
}

/// `schema` with a `description` on every subschema (and `true` spelled `{"description": …}`),
/// so no subtree of the copy is textually equal to the original and the check has to reason
/// all the way down.
fn annotated(schema: &Value, depth: usize) -> Value {
    let note = json!(format!("copy {depth}"));
    let map = match schema {
        Value::Bool(true) => return json!({ "description": note }),
        Value::Object(map) => map,
        other => return other.clone(),
    };
    let mut copy = serde_json::Map::new();
    for (keyword, value) in map {
        let value = match (keyword.as_str(), value) {
            ("properties" | "$defs", Value::Object(schemas)) => Value::Object(
                schemas
                    .iter()
                    .map(|(k, v)| (k.clone(), annotated(v, depth + 1)))
                    .collect(),
            ),
            ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(schemas)) => {
                Value::Array(schemas.iter().map(|v| annotated(v, depth + 1)).collect())
            }
            ("items" | "not", schema) => annotated(schema, depth + 1),
            (_, value) => value.clone(),
        };
        copy.insert(keyword.clone(), value);
    }
    copy.insert("description".to_string(), note);
    Value::Object(copy)
}

/// Whether `schema` is only a `$ref` to the shared definition (a loop when it is that
/// definition).
fn only_a_reference(schema: &Value) -> bool {
    schema.get("$ref").is_some() && schema.as_object().is_some_and(|map| map.len() == 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_schema_is_compatible_with_itself(root in schema(), shared in schema()) {
        prop_assume!(!only_a_reference(&shared));
        let mut root = match root {
            Value::Object(map) => map,
            other => serde_json::Map::from_iter([("allOf".to_string(), json!([other]))]),
        };
        root.insert("$defs".to_string(), json!({"shared": shared}));
        let old = Value::Object(root);
        let new = annotated(&old, 0);
        let text = old.to_string();
        let (old, new) = (ParsedSchema::Json(old), ParsedSchema::Json(new));
        let got = check(Compatibility::FullTransitive, &new, &[(1, &old), (2, &new)]);
        prop_assert!(got.is_empty(), "{text}\n{got:#?}");
    }
}
