//! Avro compatibility: can a reader schema read every datum a writer schema wrote, by Avro's
//! schema-resolution rules?
//!
//! # Rules
//!
//! The check itself is `apache_avro::schema_compatibility::SchemaCompatibility::can_read`;
//! this module only names what it found, says where, and says how to fix it. It stops at the
//! first problem in a schema, so one version yields at most one `Problem` per direction.
//!
//! | `CompatibilityError`          | rule                                | path points at            |
//! |-------------------------------|-------------------------------------|---------------------------|
//! | `MissingDefaultValue`         | `READER_FIELD_MISSING_DEFAULT_VALUE` | the reader's field        |
//! | `MissingSymbols`              | `MISSING_ENUM_SYMBOLS`              | the reader's enum         |
//! | `MissingUnionElements`        | `MISSING_UNION_BRANCH`              | the reader's type         |
//! | `FixedMismatch`               | `FIXED_SIZE_MISMATCH`               | the reader's fixed        |
//! | `NameMismatch`                | `NAME_MISMATCH`                     | the reader's named type   |
//! | `WrongType`, `TypeExpected`, `Inconclusive` | `TYPE_MISMATCH`       | the reader's type         |
//!
//! Paths are Avro paths into the *reading* schema (the new one for backward, the earlier
//! version for forward): `/fields/2/type` is the type of the third field, `/items`, `/values`
//! and `/1` (a union branch) step into arrays, maps and unions. The crate nests
//! `FieldTypeMismatch(field, cause)` once per record level; each level adds a step to the path.
//!
//! `decimal`, `big-decimal` and `duration` are compared as the types that carry them (the
//! crate cannot compare them at all; Avro's resolution ignores logical types too).
//!
//! Known limits of the crate's checker, kept rather than re-implemented: a reader enum's
//! `default` does not excuse missing symbols, field aliases are honoured only on the reader,
//! and a named type referenced by name on one side but defined inline on the other is reported
//! as `TYPE_MISMATCH`.

use super::{Problem, Roles};
use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema::{ArraySchema, FixedSchema, MapSchema, Name, RecordField, UnionSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;

/// Why `reader` cannot read what `writer` wrote, if it cannot.
pub(crate) fn problems(writer: &Schema, reader: &Schema, roles: &Roles) -> Vec<Problem> {
    let (writer, reader) = (
        without_opaque_logical_types(writer),
        without_opaque_logical_types(reader),
    );
    match SchemaCompatibility::can_read(&writer, &reader) {
        Ok(()) => Vec::new(),
        Err(error) => vec![describe(&error, &reader, roles)],
    }
}

/// `schema` with `decimal`, `big-decimal` and `duration` replaced by the type that carries
/// them (`bytes` or the `fixed`, `bytes`, `fixed(12)`).
///
/// apache-avro 0.21's checker answers `Inconclusive` for these even against themselves, so a
/// schema holding a decimal could never evolve. Avro's own resolution (and Confluent's Java
/// checker) ignores logical types and resolves the underlying types, which is what this does.
fn without_opaque_logical_types(schema: &Schema) -> Schema {
    match schema {
        Schema::Decimal(decimal) => without_opaque_logical_types(&decimal.inner),
        Schema::BigDecimal => Schema::Bytes,
        Schema::Duration => match Name::new("duration") {
            Ok(name) => Schema::Fixed(FixedSchema::builder().name(name).size(12).build()),
            Err(_) => schema.clone(),
        },
        Schema::Array(array) => Schema::Array(ArraySchema {
            items: Box::new(without_opaque_logical_types(&array.items)),
            attributes: array.attributes.clone(),
        }),
        Schema::Map(map) => Schema::Map(MapSchema {
            types: Box::new(without_opaque_logical_types(&map.types)),
            attributes: map.attributes.clone(),
        }),
        Schema::Union(union) => {
            let variants = union
                .variants()
                .iter()
                .map(without_opaque_logical_types)
                .collect();
            // Two branches that now share a type (bytes and a decimal on bytes) cannot form a
            // union: keep that union as it was.
            UnionSchema::new(variants).map_or_else(|_| schema.clone(), Schema::Union)
        }
        Schema::Record(record) => {
            let mut record = record.clone();
            for field in &mut record.fields {
                field.schema = without_opaque_logical_types(&field.schema);
            }
            Schema::Record(record)
        }
        _ => schema.clone(),
    }
}

/// Names the innermost cause of `error`, with the path to it in `reader`.
fn describe(error: &CompatibilityError, reader: &Schema, roles: &Roles) -> Problem {
    let mut path = String::new();
    let mut at = Some(reader);
    let mut error = error;
    let mut fields = Vec::new();
    while let CompatibilityError::FieldTypeMismatch(name, cause) = error {
        let found = at.and_then(|schema| find_field(schema, name, 0));
        at = found.map(|(suffix, index, field)| {
            path.push_str(&format!("{suffix}/fields/{index}/type"));
            &field.schema
        });
        fields.push(name.as_str());
        error = cause;
    }
    let field = if fields.is_empty() {
        String::new()
    } else {
        format!(" in field `{}`", fields.join("."))
    };
    let (reader_name, writer_name) = (&roles.reader, &roles.writer);
    let (rule, message) = match error {
        CompatibilityError::MissingDefaultValue(name) => {
            if let Some((suffix, index, _)) = at.and_then(|schema| find_field(schema, name, 0)) {
                path.push_str(&format!("{suffix}/fields/{index}"));
            }
            (
                "READER_FIELD_MISSING_DEFAULT_VALUE",
                format!(
                    "{reader_name} has field `{name}`{field} with no default and {writer_name} \
                     has no such field: give it a default (null with a [\"null\", …] union \
                     is usual)"
                ),
            )
        }
        CompatibilityError::MissingSymbols => (
            "MISSING_ENUM_SYMBOLS",
            format!(
                "{reader_name} lacks enum symbols that {writer_name} may write{field}: keep \
                 every symbol of {writer_name}"
            ),
        ),
        CompatibilityError::MissingUnionElements => (
            "MISSING_UNION_BRANCH",
            format!(
                "{reader_name} has no union branch for a type {writer_name} may write{field}: \
                 keep the branch (or an Avro promotion of it) in the union"
            ),
        ),
        CompatibilityError::FixedMismatch => (
            "FIXED_SIZE_MISMATCH",
            format!(
                "the fixed type{field} differs in name or size between {writer_name} and \
                 {reader_name}: keep both unchanged"
            ),
        ),
        CompatibilityError::NameMismatch {
            writer_name: written,
            reader_name: read,
        } => (
            "NAME_MISMATCH",
            format!(
                "{writer_name} names the type `{written}` but {reader_name} names it \
                 `{read}`{field}: keep the name (or add the old name as an alias)"
            ),
        ),
        CompatibilityError::TypeExpected { expected_type, .. } => (
            "TYPE_MISMATCH",
            format!(
                "{reader_name} cannot read the type {writer_name} writes{field} (expected one \
                 of {expected_type:?}): keep the type or change it only by an Avro promotion \
                 (int→long→float→double, string↔bytes)"
            ),
        ),
        _ => (
            "TYPE_MISMATCH",
            format!(
                "{reader_name} cannot read the type {writer_name} writes{field}: keep the type \
                 or change it only by an Avro promotion (int→long→float→double, string↔bytes)"
            ),
        ),
    };
    Problem {
        rule,
        path: if path.is_empty() {
            "/".to_string()
        } else {
            path
        },
        message,
    }
}

/// The field named `name` of the record `schema` is, or that it holds through arrays, maps and
/// unions: the path from `schema` to that record, the field's index and the field.
fn find_field<'s>(
    schema: &'s Schema,
    name: &str,
    depth: usize,
) -> Option<(String, usize, &'s RecordField)> {
    if depth > 16 {
        return None;
    }
    match schema {
        Schema::Record(record) => {
            let index = *record.lookup.get(name)?;
            Some((String::new(), index, record.fields.get(index)?))
        }
        Schema::Array(array) => find_field(&array.items, name, depth + 1)
            .map(|(suffix, index, field)| (format!("/items{suffix}"), index, field)),
        Schema::Map(map) => find_field(&map.types, name, depth + 1)
            .map(|(suffix, index, field)| (format!("/values{suffix}"), index, field)),
        Schema::Union(union) => union.variants().iter().enumerate().find_map(|(branch, s)| {
            find_field(s, name, depth + 1)
                .map(|(suffix, index, field)| (format!("/{branch}{suffix}"), index, field))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::{Incompatibility, check};
    use crate::model::{Compatibility, ParsedSchema};

    fn avro(text: &str) -> ParsedSchema {
        ParsedSchema::Avro(Schema::parse_str(text).expect("test schema parses"))
    }

    fn record(fields: &str) -> ParsedSchema {
        avro(&format!(
            r#"{{"type":"record","name":"Event","fields":[{fields}]}}"#
        ))
    }

    /// (rule, path, direction) of every incompatibility of `new` after `old` at `level`.
    fn found(level: Compatibility, old: &ParsedSchema, new: &ParsedSchema) -> Vec<[String; 3]> {
        summary(&check(level, new, &[(1, old)]))
    }

    fn summary(found: &[Incompatibility]) -> Vec<[String; 3]> {
        found
            .iter()
            .map(|i| [i.rule.to_string(), i.path.clone(), i.direction.to_string()])
            .collect()
    }

    fn row(rule: &str, path: &str, direction: &str) -> [String; 3] {
        [rule.to_string(), path.to_string(), direction.to_string()]
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;

    #[test]
    fn adding_a_field_with_a_default_is_backward_and_forward_compatible() {
        let old = record(ID);
        let new = record(&format!(r#"{ID},{{"name":"n","type":"int","default":0}}"#));
        assert_eq!(
            found(Compatibility::Full, &old, &new),
            Vec::<[String; 3]>::new()
        );
    }

    #[test]
    fn adding_a_field_without_a_default_breaks_backward_only() {
        let old = record(ID);
        let new = record(&format!(r#"{ID},{{"name":"n","type":"int"}}"#));
        assert_eq!(
            found(Compatibility::Full, &old, &new),
            vec![row(
                "READER_FIELD_MISSING_DEFAULT_VALUE",
                "/fields/1",
                "backward"
            )]
        );
        assert_eq!(
            found(Compatibility::Forward, &old, &new),
            Vec::<[String; 3]>::new()
        );
        let message = &check(Compatibility::Backward, &new, &[(1, &old)])[0].message;
        assert!(
            message.contains("the new schema has field `n`"),
            "{message}"
        );
        assert!(message.contains("version 1"), "{message}");
    }

    #[test]
    fn removing_a_field_without_a_default_breaks_forward_only() {
        let old = record(&format!(r#"{ID},{{"name":"n","type":"int"}}"#));
        let new = record(ID);
        assert_eq!(
            found(Compatibility::Full, &old, &new),
            vec![row(
                "READER_FIELD_MISSING_DEFAULT_VALUE",
                "/fields/1",
                "forward"
            )]
        );
        assert_eq!(
            found(Compatibility::Backward, &old, &new),
            Vec::<[String; 3]>::new()
        );
    }

    #[test]
    fn int_to_long_is_a_promotion_but_long_to_int_is_not() {
        let int = record(r#"{"name":"n","type":"int"}"#);
        let long = record(r#"{"name":"n","type":"long"}"#);
        assert_eq!(
            found(Compatibility::Backward, &int, &long),
            Vec::<[String; 3]>::new()
        );
        assert_eq!(
            found(Compatibility::Backward, &long, &int),
            vec![row("TYPE_MISMATCH", "/fields/0/type", "backward")]
        );
        // Full: the old int reader cannot read the new long.
        assert_eq!(
            found(Compatibility::Full, &int, &long),
            vec![row("TYPE_MISMATCH", "/fields/0/type", "forward")]
        );
    }

    #[test]
    fn enum_symbols_may_be_added_for_backward_but_not_removed() {
        let ab = avro(r#"{"type":"enum","name":"E","symbols":["A","B"]}"#);
        let abc = avro(r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#);
        assert_eq!(
            found(Compatibility::Backward, &ab, &abc),
            Vec::<[String; 3]>::new()
        );
        assert_eq!(
            found(Compatibility::Full, &ab, &abc),
            vec![row("MISSING_ENUM_SYMBOLS", "/", "forward")]
        );
        assert_eq!(
            found(Compatibility::Backward, &abc, &ab),
            vec![row("MISSING_ENUM_SYMBOLS", "/", "backward")]
        );
    }

    #[test]
    fn union_branches_may_be_added_for_backward_but_not_removed() {
        let narrow = record(r#"{"name":"v","type":["null","string"],"default":null}"#);
        let wide = record(r#"{"name":"v","type":["null","string","long"],"default":null}"#);
        assert_eq!(
            found(Compatibility::Backward, &narrow, &wide),
            Vec::<[String; 3]>::new()
        );
        assert_eq!(
            found(Compatibility::Backward, &wide, &narrow),
            vec![row("MISSING_UNION_BRANCH", "/fields/0/type", "backward")]
        );
        assert_eq!(
            found(Compatibility::Forward, &narrow, &wide),
            vec![row("MISSING_UNION_BRANCH", "/fields/0/type", "forward")]
        );
    }

    #[test]
    fn nested_record_problems_name_the_path_through_arrays() {
        let old = record(
            r#"{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
            "fields":[{"name":"sku","type":"string"}]}}}"#,
        );
        let new = record(
            r#"{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
            "fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}}"#,
        );
        assert_eq!(
            found(Compatibility::Backward, &old, &new),
            vec![row(
                "READER_FIELD_MISSING_DEFAULT_VALUE",
                "/fields/0/type/items/fields/1",
                "backward"
            )]
        );
    }

    #[test]
    fn renaming_a_record_is_a_name_mismatch_and_fixed_size_changes_are_caught() {
        let a = avro(r#"{"type":"record","name":"A","fields":[]}"#);
        let b = avro(r#"{"type":"record","name":"B","fields":[]}"#);
        assert_eq!(
            found(Compatibility::Backward, &a, &b),
            vec![row("NAME_MISMATCH", "/", "backward")]
        );
        let f4 = avro(r#"{"type":"fixed","name":"F","size":4}"#);
        let f8 = avro(r#"{"type":"fixed","name":"F","size":8}"#);
        assert_eq!(
            found(Compatibility::Backward, &f4, &f8),
            vec![row("FIXED_SIZE_MISMATCH", "/", "backward")]
        );
    }

    #[test]
    fn logical_types_are_compatible_with_themselves() {
        let schema = record(
            r#"{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"day","type":{"type":"int","logicalType":"date"}},
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}"#,
        );
        assert_eq!(
            found(Compatibility::FullTransitive, &schema, &schema),
            Vec::<[String; 3]>::new()
        );
    }
}
