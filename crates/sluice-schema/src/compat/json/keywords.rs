//! The keywords of one schema pair once combinators are split off: types and values, then the
//! keywords of each JSON type both schemas accept, then every keyword sluice does not reason
//! about (which must be identical in narrow when wide has it). Also the two helpers the
//! combinator rules need: `merge` (`allOf` as one schema) and `disjoint`.

use super::containers;
use super::types::{Types, same_value, types, values};
use super::{Checker, Node, escape, is_annotation, problem};
use crate::compat::Problem;
use serde_json::Value;

/// Keywords this module (or the combinator rules) reasons about; any other keyword of wide
/// must be identical in narrow.
const UNDERSTOOD: [&str; 32] = [
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependencies",
    "dependentSchemas",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "$ref",
];

/// Every problem with the keywords of `narrow` and `wide` (neither has combinators left that
/// matter: wide's were split off, narrow's `not` only narrows it further).
pub(super) fn compare<'a>(
    checker: &mut Checker<'a>,
    narrow: &Node<'a>,
    wide: &Node<'a>,
    path: &str,
    depth: usize,
) -> Vec<Problem> {
    let mut found = Vec::new();
    let (narrow_types, wide_types) = (types(narrow), types(wide));
    let lost = narrow_types.minus(wide_types);
    if !lost.is_empty() {
        let rule = if narrow_types.and(wide_types).is_empty() {
            "TYPE_CHANGED"
        } else {
            "TYPE_NARROWED"
        };
        found.push(problem(
            rule,
            path,
            format!(
                "{} no longer accepts {} here, which {} accepted: add {} back to `type`",
                checker.wide_name(),
                lost.names().join(", "),
                checker.narrow_name(),
                lost.names().join(", ")
            ),
        ));
    }
    enumeration(checker, narrow, wide, narrow_types, path, &mut found);
    let shared = narrow_types.and(wide_types);
    if shared.has(Types::NUMBER) {
        numbers(checker, narrow, wide, path, &mut found);
    }
    if shared.has(Types::STRING) {
        strings(checker, narrow, wide, path, &mut found);
    }
    if shared.has(Types::ARRAY) {
        found.extend(containers::arrays(checker, narrow, wide, path, depth));
    }
    if shared.has(Types::OBJECT) {
        found.extend(containers::objects(checker, narrow, wide, path, depth));
    }
    for (keyword, wanted) in wide.as_object().into_iter().flatten() {
        if UNDERSTOOD.contains(&keyword.as_str()) || is_annotation(keyword) {
            continue;
        }
        if narrow
            .get(keyword)
            .is_some_and(|own| checker.same_schema(own, wanted))
        {
            continue;
        }
        found.push(problem(
            "UNSUPPORTED_KEYWORD_CHANGED",
            &format!("{path}/{}", escape(keyword)),
            format!(
                "`{keyword}` in {} differs from {}, and sluice does not reason about `{keyword}`: \
                 keep it identical in both versions (or set the subject's compatibility to NONE)",
                checker.wide_name(),
                checker.narrow_name()
            ),
        ));
    }
    found
}

/// `enum` and `const`: every value narrow accepts must be listed in wide.
fn enumeration(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    narrow_types: Types,
    path: &str,
    found: &mut Vec<Problem>,
) {
    let Some(allowed) = values(wide) else {
        return;
    };
    let keyword = if wide.get("enum").is_some() {
        "enum"
    } else {
        "const"
    };
    let finite;
    let own = match values(narrow) {
        Some(own) => own,
        // Only null and booleans are few enough to list.
        None if narrow_types
            .minus(Types::NULL.or(Types::BOOLEAN))
            .is_empty() =>
        {
            finite = [Value::Null, Value::Bool(false), Value::Bool(true)];
            finite
                .iter()
                .filter(|v| narrow_types.has(Types::of(v)))
                .collect()
        }
        None => {
            found.push(problem(
                "ENUM_ARRAY_NARROWED",
                &format!("{path}/{keyword}"),
                format!(
                    "{} restricts values to `{keyword}` here while {} accepted any value of its \
                     type: drop the `{keyword}` or add it to both versions",
                    checker.wide_name(),
                    checker.narrow_name()
                ),
            ));
            return;
        }
    };
    let missing: Vec<String> = own
        .iter()
        .filter(|v| !allowed.iter().any(|a| same_value(a, v)))
        .map(|v| v.to_string())
        .collect();
    if missing.is_empty() {
        return;
    }
    let narrowed = allowed.iter().all(|a| own.iter().any(|v| same_value(a, v)));
    found.push(problem(
        if narrowed {
            "ENUM_ARRAY_NARROWED"
        } else {
            "ENUM_ARRAY_CHANGED"
        },
        &format!("{path}/{keyword}"),
        format!(
            "{} no longer allows {} here, which {} allowed: add {} back to `{keyword}`",
            checker.wide_name(),
            missing.join(", "),
            checker.narrow_name(),
            if missing.len() == 1 { "it" } else { "them" }
        ),
    ));
}

/// A bound on numbers: the value and whether it is excluded.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

/// The tightest lower (`upper == false`) or upper bound `schema` puts on numbers: its keywords,
/// or the extremes of its `enum`.
fn bound(schema: &Value, upper: bool) -> Option<Bound> {
    if let Some(values) = values(schema) {
        let numbers = values.into_iter().filter_map(Value::as_f64);
        let extreme = if upper {
            numbers.reduce(f64::max)
        } else {
            numbers.reduce(f64::min)
        };
        return extreme.map(|value| Bound {
            value,
            exclusive: false,
        });
    }
    let (inclusive, exclusive) = if upper {
        ("maximum", "exclusiveMaximum")
    } else {
        ("minimum", "exclusiveMinimum")
    };
    let draft4_exclusive = schema.get(exclusive) == Some(&Value::Bool(true));
    let bounds = [
        schema
            .get(inclusive)
            .and_then(Value::as_f64)
            .map(|value| Bound {
                value,
                exclusive: draft4_exclusive,
            }),
        schema
            .get(exclusive)
            .and_then(Value::as_f64)
            .map(|value| Bound {
                value,
                exclusive: true,
            }),
    ];
    bounds.into_iter().flatten().reduce(|a, b| {
        let tighter = if upper {
            b.value < a.value
        } else {
            b.value > a.value
        };
        if tighter || (b.value == a.value && b.exclusive) {
            b
        } else {
            a
        }
    })
}

/// `minimum`, `maximum`, their exclusive forms, and `multipleOf`.
fn numbers(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    path: &str,
    found: &mut Vec<Problem>,
) {
    for upper in [false, true] {
        let own = bound(narrow, upper);
        let (inclusive, exclusive) = if upper {
            ("maximum", "exclusiveMaximum")
        } else {
            ("minimum", "exclusiveMinimum")
        };
        let draft4_exclusive = wide.get(exclusive) == Some(&Value::Bool(true));
        let limits = [
            (
                inclusive,
                wide.get(inclusive).and_then(Value::as_f64),
                draft4_exclusive,
            ),
            (exclusive, wide.get(exclusive).and_then(Value::as_f64), true),
        ];
        for (keyword, limit, excludes) in limits {
            let Some(limit) = limit else { continue };
            let within = own.is_some_and(|own| {
                let inside = if upper {
                    own.value < limit
                } else {
                    own.value > limit
                };
                inside || (own.value == limit && (own.exclusive || !excludes))
            });
            if within {
                continue;
            }
            let rule = match (keyword, own.is_some()) {
                ("minimum", false) => "MINIMUM_ADDED",
                ("minimum", true) => "MINIMUM_INCREASED",
                ("maximum", false) => "MAXIMUM_ADDED",
                ("maximum", true) => "MAXIMUM_DECREASED",
                ("exclusiveMinimum", false) => "EXCLUSIVE_MINIMUM_ADDED",
                ("exclusiveMinimum", true) => "EXCLUSIVE_MINIMUM_INCREASED",
                ("exclusiveMaximum", false) => "EXCLUSIVE_MAXIMUM_ADDED",
                _ => "EXCLUSIVE_MAXIMUM_DECREASED",
            };
            found.push(problem(
                rule,
                &format!("{path}/{keyword}"),
                format!(
                    "{} sets `{keyword}` to {limit} here, rejecting numbers {} accepted: keep \
                     the bound at least as wide as {}",
                    checker.wide_name(),
                    checker.narrow_name(),
                    match own {
                        Some(own) => format!(
                            "{} ({})",
                            own.value,
                            if own.exclusive {
                                "exclusive"
                            } else {
                                "inclusive"
                            }
                        ),
                        None => "before (none)".to_string(),
                    }
                ),
            ));
        }
    }
    multiple_of(checker, narrow, wide, path, found);
}

/// Whether `a` is a whole multiple of `b`.
fn divides(a: f64, b: f64) -> bool {
    if b == 0.0 {
        return false;
    }
    let quotient = a / b;
    (quotient - quotient.round()).abs() <= 1e-9 * quotient.abs().max(1.0)
}

fn multiple_of(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    path: &str,
    found: &mut Vec<Problem>,
) {
    let Some(step) = wide.get("multipleOf").and_then(Value::as_f64) else {
        return;
    };
    let own = narrow.get("multipleOf").and_then(Value::as_f64);
    let fits = match (values(narrow), own) {
        (Some(values), _) => values
            .into_iter()
            .filter_map(Value::as_f64)
            .all(|v| divides(v, step)),
        (None, Some(own)) => divides(own, step),
        // Integers are multiples of 1/n.
        (None, None) => !types(narrow).has(Types::FRACTION) && divides(1.0, step),
    };
    if fits {
        return;
    }
    let rule = match own {
        None => "MULTIPLE_OF_ADDED",
        Some(own) if divides(step, own) => "MULTIPLE_OF_EXPANDED",
        Some(_) => "MULTIPLE_OF_CHANGED",
    };
    found.push(problem(
        rule,
        &format!("{path}/multipleOf"),
        format!(
            "{} requires multiples of {step} here, rejecting numbers {} accepted: use a \
             `multipleOf` that divides {}",
            checker.wide_name(),
            checker.narrow_name(),
            own.map_or_else(
                || "every accepted number".to_string(),
                |own| own.to_string()
            )
        ),
    ));
}

/// `minLength`, `maxLength`, `pattern` and `format`.
fn strings(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    path: &str,
    found: &mut Vec<Problem>,
) {
    let lengths: Option<Vec<u64>> = values(narrow).map(|values| {
        values
            .into_iter()
            .filter_map(Value::as_str)
            .map(|s| s.chars().count() as u64)
            .collect()
    });
    let own_min = match &lengths {
        Some(lengths) => lengths.iter().copied().min(),
        None => narrow.get("minLength").and_then(Value::as_u64),
    };
    let own_max = match &lengths {
        Some(lengths) => lengths.iter().copied().max(),
        None => narrow.get("maxLength").and_then(Value::as_u64),
    };
    let named = |keyword: &str| narrow.get(keyword).is_some() || lengths.is_some();
    if let Some(min) = wide.get("minLength").and_then(Value::as_u64)
        && own_min.unwrap_or(0) < min
    {
        found.push(problem(
            if named("minLength") {
                "MIN_LENGTH_INCREASED"
            } else {
                "MIN_LENGTH_ADDED"
            },
            &format!("{path}/minLength"),
            format!(
                "{} requires at least {min} characters here, rejecting shorter strings {} \
                 accepted: lower `minLength` to {}",
                checker.wide_name(),
                checker.narrow_name(),
                own_min.unwrap_or(0)
            ),
        ));
    }
    if let Some(max) = wide.get("maxLength").and_then(Value::as_u64)
        && own_max.is_none_or(|own| own > max)
    {
        found.push(problem(
            if named("maxLength") {
                "MAX_LENGTH_DECREASED"
            } else {
                "MAX_LENGTH_ADDED"
            },
            &format!("{path}/maxLength"),
            format!(
                "{} allows at most {max} characters here, rejecting longer strings {} accepted: \
                 raise or drop `maxLength`",
                checker.wide_name(),
                checker.narrow_name()
            ),
        ));
    }
    for (keyword, added, changed) in [
        ("pattern", "PATTERN_ADDED", "PATTERN_CHANGED"),
        ("format", "FORMAT_ADDED", "FORMAT_CHANGED"),
    ] {
        let Some(wanted) = wide.get(keyword) else {
            continue;
        };
        let own = narrow.get(keyword);
        if own == Some(wanted) {
            continue;
        }
        found.push(problem(
            if own.is_some() { changed } else { added },
            &format!("{path}/{keyword}"),
            format!(
                "{} requires `{keyword}` {wanted} here, which {} did not require: strings it \
                 accepted may not match; keep the `{keyword}` of {} or drop it",
                checker.wide_name(),
                checker.narrow_name(),
                checker.narrow_name()
            ),
        ));
    }
}
