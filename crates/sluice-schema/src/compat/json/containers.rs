//! Objects and arrays: named members (`properties`, tuple items) compared one by one, and the
//! members a schema does not name governed by its *content model* — open (`additionalProperties`
//! absent or `true`, no `patternProperties`), closed (`false`), or partially open (a schema, or
//! `patternProperties`, which sluice does not evaluate and so treats as covering nothing).

use super::{Checker, Node, accepts_everything, child_of, escape, list, members, problem};
use crate::compat::Problem;
use serde_json::Value;

/// What a schema says about object members or array items it does not name.
enum Model<'a> {
    Open,
    Closed,
    Partial(Node<'a>),
    /// `patternProperties`: partially open by patterns sluice does not evaluate.
    Patterned,
}

/// The content model `rest` (the `additionalProperties`/`items`/`additionalItems` schema, if
/// any) gives.
fn model_of(rest: Option<Node<'_>>) -> Model<'_> {
    match rest {
        None => Model::Open,
        Some(schema) if *schema == Value::Bool(false) => Model::Closed,
        Some(schema) if accepts_everything(&schema) => Model::Open,
        Some(schema) => Model::Partial(schema),
    }
}

/// The content model of an object schema for members it does not name.
fn object_model<'a>(node: &Node<'a>) -> Model<'a> {
    let patterned = node
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_some_and(|patterns| !patterns.is_empty());
    if patterned {
        Model::Patterned
    } else {
        model_of(child_of(node, "additionalProperties"))
    }
}

fn names(node: &Value, keyword: &str) -> Vec<String> {
    node.get(keyword)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `properties`, `required`, `additionalProperties`, `patternProperties`, the property counts
/// and dependencies.
pub(super) fn objects<'a>(
    checker: &mut Checker<'a>,
    narrow: &Node<'a>,
    wide: &Node<'a>,
    path: &str,
    depth: usize,
) -> Vec<Problem> {
    let mut found = Vec::new();
    let (narrow_properties, wide_properties) =
        (members(narrow, "properties"), members(wide, "properties"));
    let (narrow_model, wide_model) = (object_model(narrow), object_model(wide));
    let lookup = |properties: &[(String, Node<'a>)], name: &str| {
        properties
            .iter()
            .find(|(own, _)| own == name)
            .map(|(_, schema)| schema.clone())
    };
    for (name, schema) in &narrow_properties {
        let at = format!("{path}/properties/{}", escape(name));
        if let Some(wanted) = lookup(&wide_properties, name) {
            found.extend(checker.subset(schema.clone(), wanted, &at, depth));
            continue;
        }
        let rule = match &wide_model {
            Model::Open => continue,
            Model::Closed if **schema == Value::Bool(false) => continue,
            Model::Closed => "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
            Model::Partial(rest) => {
                if checker
                    .subset(schema.clone(), rest.clone(), &at, depth)
                    .is_empty()
                {
                    continue;
                }
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            }
            Model::Patterned => "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        };
        found.push(problem(
            rule,
            &at,
            format!(
                "{} dropped property `{name}` and does not accept it as an additional property, \
                 so documents of {} that have it are rejected: keep `{name}` in `properties`",
                checker.wide_name(),
                checker.narrow_name()
            ),
        ));
    }
    for (name, wanted) in &wide_properties {
        if lookup(&narrow_properties, name).is_some() {
            continue;
        }
        let at = format!("{path}/properties/{}", escape(name));
        let rule = match &narrow_model {
            Model::Closed => continue,
            Model::Open if accepts_everything(wanted) => continue,
            Model::Open => "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
            Model::Partial(rest) => {
                if checker
                    .subset(rest.clone(), wanted.clone(), &at, depth)
                    .is_empty()
                {
                    continue;
                }
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            }
            Model::Patterned if accepts_everything(wanted) => continue,
            Model::Patterned => "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        };
        found.push(problem(
            rule,
            &at,
            format!(
                "{} adds property `{name}` with a schema, but {} let documents carry `{name}` \
                 with any value: close {} with `additionalProperties: false` before adding \
                 properties, or give `{name}` the schema `{{}}`",
                checker.wide_name(),
                checker.narrow_name(),
                checker.narrow_name()
            ),
        ));
    }
    required(
        checker,
        narrow,
        wide,
        &narrow_properties,
        &narrow_model,
        path,
        &mut found,
    );
    additional(checker, narrow, wide, path, depth, &mut found);
    counts(checker, narrow, wide, path, "Properties", &mut found);
    dependencies(checker, narrow, wide, path, depth, &mut found);
    found
}

/// `required`: a property wide requires must have been required by narrow.
fn required(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    narrow_properties: &[(String, Node<'_>)],
    narrow_model: &Model<'_>,
    path: &str,
    found: &mut Vec<Problem>,
) {
    let already = names(narrow, "required");
    for name in names(wide, "required") {
        if already.contains(&name) {
            continue;
        }
        let (rule, at) = if narrow_properties.iter().any(|(own, _)| *own == name) {
            (
                "REQUIRED_ATTRIBUTE_ADDED",
                format!("{path}/required/{}", escape(&name)),
            )
        } else if matches!(narrow_model, Model::Open) {
            let at = format!("{path}/properties/{}", escape(&name));
            ("REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", at)
        } else {
            let at = format!("{path}/properties/{}", escape(&name));
            ("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", at)
        };
        found.push(problem(
            rule,
            &at,
            format!(
                "{} requires `{name}`, which {} did not require, so its documents without \
                 `{name}` are rejected (a default does not change that): keep `{name}` optional",
                checker.wide_name(),
                checker.narrow_name()
            ),
        ));
    }
}

/// `additionalProperties` for members neither names, and `patternProperties`.
fn additional<'a>(
    checker: &mut Checker<'a>,
    narrow: &Node<'a>,
    wide: &Node<'a>,
    path: &str,
    depth: usize,
    found: &mut Vec<Problem>,
) {
    let at = format!("{path}/additionalProperties");
    let narrow_rest = model_of(child_of(narrow, "additionalProperties"));
    let wide_rest = model_of(child_of(wide, "additionalProperties"));
    let rule = match (&narrow_rest, &wide_rest) {
        (_, Model::Open) | (Model::Closed, _) => None,
        (_, Model::Closed) => Some("ADDITIONAL_PROPERTIES_REMOVED"),
        (Model::Partial(own), Model::Partial(wanted)) => {
            found.extend(checker.subset(own.clone(), wanted.clone(), &at, depth));
            None
        }
        _ => Some("ADDITIONAL_PROPERTIES_NARROWED"),
    };
    if let Some(rule) = rule {
        found.push(problem(
            rule,
            &at,
            format!(
                "{} restricts properties it does not name, which {} accepted freely: keep \
                 `additionalProperties` as open as in {}",
                checker.wide_name(),
                checker.narrow_name(),
                checker.narrow_name()
            ),
        ));
    }
    let (own, wanted) = (
        narrow.get("patternProperties"),
        wide.get("patternProperties"),
    );
    let same = match (own, wanted) {
        (Some(own), Some(wanted)) => checker.same_schema(own, wanted),
        (None, None) => true,
        // Dropping patterns only widens while unnamed members are free anyway.
        (Some(_), None) => matches!(wide_rest, Model::Open),
        (None, Some(_)) => false,
    };
    if !same {
        found.push(problem(
            "UNSUPPORTED_KEYWORD_CHANGED",
            &format!("{path}/patternProperties"),
            format!(
                "`patternProperties` differ between {} and {}, and sluice does not evaluate \
                 patterns: keep them identical in both versions",
                checker.narrow_name(),
                checker.wide_name()
            ),
        ));
    }
}

/// `minProperties`/`maxProperties` (`noun` = "Properties") or `minItems`/`maxItems` ("Items").
fn counts(
    checker: &Checker<'_>,
    narrow: &Value,
    wide: &Value,
    path: &str,
    noun: &str,
    found: &mut Vec<Problem>,
) {
    let (min, max) = (format!("min{noun}"), format!("max{noun}"));
    let upper = noun.to_ascii_uppercase();
    let own_min = narrow.get(&min).and_then(Value::as_u64);
    let own_max = narrow.get(&max).and_then(Value::as_u64);
    if let Some(wanted) = wide.get(&min).and_then(Value::as_u64)
        && own_min.unwrap_or(0) < wanted
    {
        let rule = match (noun, own_min.is_some()) {
            ("Items", false) => "MIN_ITEMS_ADDED",
            ("Items", true) => "MIN_ITEMS_INCREASED",
            (_, false) => "MIN_PROPERTIES_ADDED",
            (_, true) => "MIN_PROPERTIES_INCREASED",
        };
        found.push(problem(
            rule,
            &format!("{path}/{min}"),
            format!(
                "{} requires at least {wanted} {} here where {} required {}: lower `{min}`",
                checker.wide_name(),
                upper.to_lowercase(),
                checker.narrow_name(),
                own_min.unwrap_or(0)
            ),
        ));
    }
    if let Some(wanted) = wide.get(&max).and_then(Value::as_u64)
        && own_max.is_none_or(|own| own > wanted)
    {
        let rule = match (noun, own_max.is_some()) {
            ("Items", false) => "MAX_ITEMS_ADDED",
            ("Items", true) => "MAX_ITEMS_DECREASED",
            (_, false) => "MAX_PROPERTIES_ADDED",
            (_, true) => "MAX_PROPERTIES_DECREASED",
        };
        found.push(problem(
            rule,
            &format!("{path}/{max}"),
            format!(
                "{} allows at most {wanted} {} here, fewer than {} allowed: raise or drop `{max}`",
                checker.wide_name(),
                upper.to_lowercase(),
                checker.narrow_name()
            ),
        ));
    }
}

/// `dependentRequired` (and array-valued `dependencies`): wide may not ask for more;
/// `dependentSchemas` (and schema-valued `dependencies`): narrow's must fit wide's.
fn dependencies<'a>(
    checker: &mut Checker<'a>,
    narrow: &Node<'a>,
    wide: &Node<'a>,
    path: &str,
    depth: usize,
    found: &mut Vec<Problem>,
) {
    let required_already = names(narrow, "required");
    let arrays = |node: &Node<'a>| -> Vec<(String, Vec<String>, &'static str)> {
        let mut all = Vec::new();
        for keyword in ["dependentRequired", "dependencies"] {
            for (name, value) in node
                .get(keyword)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(list) = value.as_array() {
                    let list = list
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    all.push((name.clone(), list, keyword));
                }
            }
        }
        all
    };
    let own_arrays = arrays(narrow);
    for (name, wanted, keyword) in arrays(wide) {
        let own = own_arrays
            .iter()
            .find(|(own, _, _)| *own == name)
            .map(|(_, list, _)| list);
        let extra: Vec<&String> = wanted
            .iter()
            .filter(|dependent| {
                !own.is_some_and(|own| own.contains(dependent))
                    && !required_already.contains(dependent)
            })
            .collect();
        if extra.is_empty() {
            continue;
        }
        let rule = match own {
            None => "DEPENDENCY_ARRAY_ADDED",
            Some(own) if own.iter().all(|dependent| wanted.contains(dependent)) => {
                "DEPENDENCY_ARRAY_EXTENDED"
            }
            Some(_) => "DEPENDENCY_ARRAY_CHANGED",
        };
        let extra: Vec<String> = extra.iter().map(|name| format!("`{name}`")).collect();
        found.push(problem(
            rule,
            &format!("{path}/{keyword}/{}", escape(&name)),
            format!(
                "{} requires {} whenever `{name}` is present, which {} did not: drop the new \
                 dependency",
                checker.wide_name(),
                extra.join(", "),
                checker.narrow_name()
            ),
        ));
    }
    for keyword in ["dependentSchemas", "dependencies"] {
        for (name, wanted) in members(wide, keyword) {
            if wanted.is_array() {
                continue;
            }
            let at = format!("{path}/{keyword}/{}", escape(&name));
            let own = ["dependentSchemas", "dependencies"]
                .into_iter()
                .find_map(|own_keyword| {
                    members(narrow, own_keyword)
                        .into_iter()
                        .find(|(own, schema)| *own == name && !schema.is_array())
                });
            match own {
                Some((_, own)) => found.extend(checker.subset(own, wanted, &at, depth)),
                None => found.push(problem(
                    "DEPENDENCY_SCHEMA_ADDED",
                    &at,
                    format!(
                        "{} adds a schema that documents with `{name}` must match, which {} did \
                         not have: drop it",
                        checker.wide_name(),
                        checker.narrow_name()
                    ),
                )),
            }
        }
    }
}

/// The items of an array schema: a tuple of positional schemas, and the schema for the rest.
struct Items<'a> {
    tuple_keyword: &'static str,
    tuple: Vec<Node<'a>>,
    rest_keyword: &'static str,
    rest: Option<Node<'a>>,
}

fn items_of<'a>(node: &Node<'a>) -> Items<'a> {
    if let Some(tuple) = list(node, "prefixItems") {
        Items {
            tuple_keyword: "prefixItems",
            tuple,
            rest_keyword: "items",
            rest: child_of(node, "items"),
        }
    } else if let Some(tuple) = list(node, "items") {
        let rest = child_of(node, "additionalItems");
        Items {
            tuple_keyword: "items",
            tuple,
            rest_keyword: "additionalItems",
            rest,
        }
    } else {
        Items {
            tuple_keyword: "items",
            tuple: Vec::new(),
            rest_keyword: "items",
            rest: child_of(node, "items"),
        }
    }
}

/// `prefixItems`/`items`/`additionalItems`, the item counts and `uniqueItems`.
pub(super) fn arrays<'a>(
    checker: &mut Checker<'a>,
    narrow: &Node<'a>,
    wide: &Node<'a>,
    path: &str,
    depth: usize,
) -> Vec<Problem> {
    let mut found = Vec::new();
    let (own, wanted) = (items_of(narrow), items_of(wide));
    let (own_rest, wanted_rest) = (model_of(own.rest.clone()), model_of(wanted.rest.clone()));
    for i in 0..own.tuple.len().max(wanted.tuple.len()) {
        let at = format!("{path}/{}/{i}", wanted.tuple_keyword);
        let rule = match (own.tuple.get(i), wanted.tuple.get(i)) {
            (Some(a), Some(b)) => {
                found.extend(checker.subset(a.clone(), b.clone(), &at, depth));
                continue;
            }
            (Some(item), None) => match &wanted_rest {
                Model::Open => continue,
                Model::Closed if **item == Value::Bool(false) => continue,
                Model::Partial(rest)
                    if checker
                        .subset(item.clone(), rest.clone(), &at, depth)
                        .is_empty() =>
                {
                    continue;
                }
                Model::Partial(_) | Model::Patterned => {
                    "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                }
                Model::Closed => "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
            },
            (None, Some(item)) => match &own_rest {
                Model::Closed => continue,
                Model::Open if accepts_everything(item) => continue,
                Model::Open => "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                Model::Partial(rest)
                    if checker
                        .subset(rest.clone(), item.clone(), &at, depth)
                        .is_empty() =>
                {
                    continue;
                }
                Model::Partial(_) | Model::Patterned => {
                    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                }
            },
            (None, None) => continue,
        };
        found.push(problem(
            rule,
            &at,
            format!(
                "item {i} is constrained differently by {} than {} allowed (a positional item \
                 was added or removed): keep the positions of {} and add new ones only after \
                 closing the tuple",
                checker.wide_name(),
                checker.narrow_name(),
                checker.narrow_name()
            ),
        ));
    }
    let at = format!("{path}/{}", wanted.rest_keyword);
    let tuples = !own.tuple.is_empty() || !wanted.tuple.is_empty();
    let rule = match (&own_rest, &wanted_rest) {
        (_, Model::Open) | (Model::Closed, _) => None,
        (_, Model::Closed) => Some("ADDITIONAL_ITEMS_REMOVED"),
        (Model::Partial(a), Model::Partial(b)) => {
            found.extend(checker.subset(a.clone(), b.clone(), &at, depth));
            None
        }
        _ if tuples => Some("ADDITIONAL_ITEMS_NARROWED"),
        _ => Some("SCHEMA_ADDED"),
    };
    if let Some(rule) = rule {
        found.push(problem(
            rule,
            &at,
            format!(
                "{} constrains array items that {} accepted freely: keep `{}` as open as before",
                checker.wide_name(),
                checker.narrow_name(),
                wanted.rest_keyword
            ),
        ));
    }
    counts(checker, narrow, wide, path, "Items", &mut found);
    if wide.get("uniqueItems") == Some(&Value::Bool(true))
        && narrow.get("uniqueItems") != Some(&Value::Bool(true))
    {
        found.push(problem(
            "UNIQUE_ITEMS_ADDED",
            &format!("{path}/uniqueItems"),
            format!(
                "{} requires unique items, rejecting arrays with repeats that {} accepted: drop \
                 `uniqueItems`",
                checker.wide_name(),
                checker.narrow_name()
            ),
        ));
    }
    found
}
