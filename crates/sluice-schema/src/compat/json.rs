//! JSON Schema compatibility: does every document the writing schema accepts also pass the
//! reading schema? (*narrow* ⊆ *wide*.)
//!
//! Backward calls `subset_problems` with (old, new), forward with (new, old); rule names
//! describe the change going from narrow to wide, as Confluent's `SchemaDiff` names the change
//! from its "original" to its "update" in either direction.
//!
//! # Rules
//!
//! The check is sound where it says "compatible" and conservative elsewhere: where exact
//! reasoning is out of reach it reports a problem rather than accept. Identical subschemas
//! (same text, and every local `$ref` inside pointing at identical text) are always compatible.
//!
//! | what changes from narrow to wide | rule (incompatible unless noted) |
//! |---|---|
//! | a JSON type no longer accepted (`integer` ⊂ `number`) | `TYPE_NARROWED`, or `TYPE_CHANGED` when none is left |
//! | wide is `false` | `TYPE_CHANGED` |
//! | `enum`/`const` added or values removed | `ENUM_ARRAY_NARROWED`, `ENUM_ARRAY_CHANGED` |
//! | `minimum`, `exclusiveMinimum` added or raised | `MINIMUM_ADDED`/`_INCREASED`, `EXCLUSIVE_MINIMUM_…` |
//! | `maximum`, `exclusiveMaximum` added or lowered | `MAXIMUM_ADDED`/`_DECREASED`, `EXCLUSIVE_MAXIMUM_…` |
//! | `multipleOf` added, or not a divisor of narrow's | `MULTIPLE_OF_ADDED`, `_EXPANDED`, `_CHANGED` |
//! | `minLength` raised / `maxLength` lowered | `MIN_LENGTH_ADDED`/`_INCREASED`, `MAX_LENGTH_ADDED`/`_DECREASED` |
//! | `pattern`, `format` added or changed | `PATTERN_ADDED`/`_CHANGED`, `FORMAT_ADDED`/`_CHANGED` |
//! | `minItems` raised, `maxItems` lowered, `uniqueItems` added | `MIN_ITEMS_…`, `MAX_ITEMS_…`, `UNIQUE_ITEMS_ADDED` |
//! | tuple item (`prefixItems`/array `items`) removed / added | `ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL`, `ITEM_ADDED_TO_OPEN_CONTENT_MODEL`, `ITEM_…_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL` |
//! | `items` schema added where there was none | `SCHEMA_ADDED` |
//! | `additionalItems` now `false` / now a schema | `ADDITIONAL_ITEMS_REMOVED`, `ADDITIONAL_ITEMS_NARROWED` |
//! | property removed from a closed wide (`additionalProperties: false`) | `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL` (fine if open, or if narrow had it `false`) |
//! | property removed, wide's `additionalProperties` schema rejects it | `PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL` |
//! | property added to an open narrow with a schema other than `{}` | `PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL` |
//! | property added, narrow's `additionalProperties` schema is not within it | `PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL` |
//! | property now required that narrow defined | `REQUIRED_ATTRIBUTE_ADDED` |
//! | property now required that narrow did not define | `REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL` / `…_UNOPEN_CONTENT_MODEL` |
//! | `additionalProperties` now `false` / now a schema | `ADDITIONAL_PROPERTIES_REMOVED`, `ADDITIONAL_PROPERTIES_NARROWED` |
//! | `minProperties` raised, `maxProperties` lowered | `MIN_PROPERTIES_…`, `MAX_PROPERTIES_…` |
//! | `dependentRequired` (or array `dependencies`) asks for more | `DEPENDENCY_ARRAY_ADDED`/`_EXTENDED`/`_CHANGED` |
//! | `dependentSchemas` (or schema `dependencies`) added or changed | `DEPENDENCY_SCHEMA_ADDED`/`_CHANGED` |
//! | an `anyOf`/`oneOf` branch of narrow fits no branch of wide, or narrow fits no branch | `COMBINED_TYPE_SUBSCHEMAS_CHANGED` |
//! | a wide `oneOf` branch that fits may overlap another | `ONE_OF_BRANCHES_OVERLAP` |
//! | a wide `not` that narrow is not provably outside of | `NOT_TYPE_EXTENDED` |
//! | any other keyword of wide (`patternProperties`, `if`, `contains`, …) not identical in narrow | `UNSUPPORTED_KEYWORD_CHANGED` |
//! | an external `$ref` (another document) that differs | `EXTERNAL_REFERENCE_CHANGED` |
//! | a local `$ref` that points at nothing | `UNRESOLVED_REFERENCE` |
//! | nesting past 64 levels / more than 100,000 comparisons | `SCHEMA_TOO_DEEP` / `SCHEMA_TOO_COMPLEX` |
//!
//! Deliberate differences from Confluent: a newly required property is incompatible even when
//! it has a `default` (a default does not make an old document valid); `format` is compared
//! (Confluent ignores it); `oneOf` is not treated as `anyOf` (a document must match exactly one
//! branch, so an overlapping branch is reported).
//!
//! How combinators are reasoned about (each step is exact or a sufficient condition):
//! wide `allOf` — narrow must fit every conjunct; narrow `allOf` — merged into one schema when
//! the conjuncts do not interact (no `additionalProperties`, `patternProperties`,
//! `unevaluated*`, tuples), else it suffices that narrow's own keywords or one conjunct fit;
//! narrow `anyOf`/`oneOf` — every branch (with narrow's own keywords) must fit; wide
//! `anyOf`/`oneOf` — narrow must fit one branch; for `oneOf` that branch must be provably
//! disjoint from the others (different JSON types, disjoint `enum`/`const`, or a required
//! property with disjoint values), or, when narrow is a `oneOf` too, each other wide branch
//! must lie within another narrow branch. Keywords only apply to the JSON types both schemas
//! accept: `maxLength` is not compared for a schema that accepts no strings.
//!
//! Local `$ref`s (`#`, `#/$defs/x`, `#/definitions/x`, `#anchor`) are resolved in their own
//! document; a `$ref` with sibling keywords is `allOf` of the target and the siblings. A pair of
//! schemas met again while it is being compared (a recursive schema) is taken as compatible.
//! Annotations (`title`, `description`, `examples`, `default`, `$comment`, `deprecated`,
//! `readOnly`, `writeOnly`, `$id`, `$schema`, `$anchor`, `$dynamicAnchor`) are ignored.
//!
//! # Layout
//!
//! This file holds the walk (bounds, cycles, answers kept for pairs met again);
//! `combinators` the combinator rules; `keywords` types, values, numbers and strings;
//! `containers` objects and arrays; `intersection` merging an `allOf` and disjointness;
//! `refs` `$ref` resolution; `types` the JSON type sets.

mod combinators;
mod containers;
mod intersection;
mod keywords;
mod refs;
#[cfg(test)]
mod tests;
mod types;

use super::{Problem, Roles};
use refs::resolve;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Subschemas deeper than this are not compared (`SCHEMA_TOO_DEEP`).
const MAX_DEPTH: usize = 64;
/// Comparisons of subschema pairs allowed for one check (`SCHEMA_TOO_COMPLEX`).
const MAX_STEPS: usize = 100_000;
/// `$ref`s followed in a row before giving up on a chain.
const MAX_REF_CHAIN: usize = 32;

/// Keywords that never change which documents a schema accepts.
const ANNOTATIONS: [&str; 14] = [
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$id",
    "$schema",
    "$anchor",
    "$dynamicAnchor",
    "$defs",
    "definitions",
];

/// Whether `key` is an annotation, or a container of definitions reached only through `$ref`.
fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key)
}

/// A subschema: borrowed from one of the two documents, or built while comparing (a merged
/// `allOf`, a schema without one of its combinators).
type Node<'a> = Cow<'a, Value>;

/// Every reason a document valid under `narrow` may be invalid under `wide`; `roles` names them
/// in messages (`narrow` is the writer, `wide` the reader).
pub(crate) fn subset_problems(narrow: &Value, wide: &Value, roles: &Roles) -> Vec<Problem> {
    let mut checker = Checker {
        roots: [narrow, wide],
        swapped: false,
        roles,
        in_progress: HashMap::new(),
        assumed: usize::MAX,
        known: HashMap::new(),
        steps: 0,
        abandoned: None,
    };
    let mut found = checker.subset(Cow::Borrowed(narrow), Cow::Borrowed(wide), "#", 0);
    if let Some(abandoned) = checker.abandoned {
        // Every comparison after the bound failed with this problem; report it once.
        found.retain(|problem| problem.rule != abandoned.rule);
        found.push(abandoned);
    }
    found
}

/// The state of one check: both documents (for `$ref`s), the pairs being compared (for
/// recursive schemas) and the work done so far (for the bounds).
pub(super) struct Checker<'a> {
    /// The narrow and the wide document, swapped while a check runs the other way round.
    roots: [&'a Value; 2],
    swapped: bool,
    roles: &'a Roles,
    /// The pairs being compared on the way here, with their level (0 for the outermost): a
    /// pair met again is a cycle.
    in_progress: HashMap<Pair, usize>,
    /// The lowest level of a pair taken as compatible because it was met again (a cycle)
    /// while comparing the current pair; `usize::MAX` when none.
    assumed: usize,
    /// Answers for pairs that depend on no cycle assumption, with paths relative to the pair.
    known: HashMap<Pair, Vec<Problem>>,
    steps: usize,
    /// `SCHEMA_TOO_DEEP` or `SCHEMA_TOO_COMPLEX`, once a bound was hit: every comparison past
    /// it fails with this problem, and the check reports it once.
    abandoned: Option<Problem>,
}

impl<'a> Checker<'a> {
    fn narrow_root(&self) -> &'a Value {
        self.roots[usize::from(self.swapped)]
    }

    fn wide_root(&self) -> &'a Value {
        self.roots[usize::from(!self.swapped)]
    }

    /// How messages name the narrow schema (the writer).
    pub(super) fn narrow_name(&self) -> &str {
        if self.swapped {
            &self.roles.reader
        } else {
            &self.roles.writer
        }
    }

    /// How messages name the wide schema (the reader).
    pub(super) fn wide_name(&self) -> &str {
        if self.swapped {
            &self.roles.writer
        } else {
            &self.roles.reader
        }
    }

    /// Every reason a document valid under `narrow` may be invalid under `wide`, at `path`.
    pub(super) fn subset(
        &mut self,
        narrow: Node<'a>,
        wide: Node<'a>,
        path: &str,
        depth: usize,
    ) -> Vec<Problem> {
        self.steps += 1;
        if depth > MAX_DEPTH || self.steps > MAX_STEPS {
            return self.give_up(path, depth > MAX_DEPTH);
        }
        let narrow = match resolve(self.narrow_root(), narrow) {
            Ok(narrow) => narrow,
            Err(message) => return vec![problem("UNRESOLVED_REFERENCE", path, message)],
        };
        let wide = match resolve(self.wide_root(), wide) {
            Ok(wide) => wide,
            Err(message) => return vec![problem("UNRESOLVED_REFERENCE", path, message)],
        };
        if rejects_everything(&narrow) || accepts_everything(&wide) {
            return Vec::new();
        }
        if *wide == Value::Bool(false) {
            return vec![problem(
                "TYPE_CHANGED",
                path,
                format!(
                    "{} is `false` here and accepts nothing that {} accepted: allow the old \
                     values again",
                    self.wide_name(),
                    self.narrow_name()
                ),
            )];
        }
        if self.same_schema(&narrow, &wide) {
            return Vec::new();
        }
        let key = (identity(&narrow), identity(&wide), self.swapped);
        if let Some(&level) = self.in_progress.get(&key) {
            // A cycle: taken as compatible, which holds for everything depending on it only
            // once the pair at `level` is done.
            self.assumed = self.assumed.min(level);
            return Vec::new();
        }
        if let Some(known) = self.known.get(&key) {
            return known
                .iter()
                .map(|p| problem(p.rule, &format!("{path}{}", p.path), p.message.clone()))
                .collect();
        }
        let level = self.in_progress.len();
        self.in_progress.insert(key, level);
        let outer = std::mem::replace(&mut self.assumed, usize::MAX);
        let found = self.combinators(narrow, wide, path, depth);
        self.in_progress.remove(&key);
        if self.assumed >= level && self.abandoned.is_none() {
            // Depends on no pair still in progress: the answer holds wherever the pair is met.
            let relative = found.iter().map(|p| Problem {
                rule: p.rule,
                path: p.path.strip_prefix(path).unwrap_or(&p.path).to_string(),
                message: p.message.clone(),
            });
            self.known.insert(key, relative.collect());
            self.assumed = usize::MAX;
        }
        self.assumed = self.assumed.min(outer);
        found
    }

    fn give_up(&mut self, path: &str, too_deep: bool) -> Vec<Problem> {
        let abandoned = self.abandoned.get_or_insert_with(|| {
            if too_deep {
                problem(
                    "SCHEMA_TOO_DEEP",
                    path,
                    format!(
                        "the schemas nest deeper than {MAX_DEPTH} levels here, past what sluice \
                         compares: flatten them with `$defs` and `$ref`"
                    ),
                )
            } else {
                problem(
                    "SCHEMA_TOO_COMPLEX",
                    path,
                    format!(
                        "comparing the schemas took more than {MAX_STEPS} steps (large \
                         `anyOf`/`oneOf` cross products): simplify the combinators"
                    ),
                )
            }
        });
        vec![abandoned.clone()]
    }
}

/// A pair of subschemas compared, and whether the documents' roles were swapped.
type Pair = (Identity, Identity, bool);

/// Which subschema a node is, to recognise a pair met again: a subschema of a document by its
/// address, a built one by a hash of its content (built ones are rebuilt on every pass of a
/// cycle, so their addresses differ while their content repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity {
    Borrowed(usize),
    Built(u64),
}

fn identity(node: &Node<'_>) -> Identity {
    match node {
        Cow::Borrowed(value) => Identity::Borrowed(std::ptr::from_ref(*value) as usize),
        Cow::Owned(value) => {
            let mut hasher = std::hash::DefaultHasher::new();
            hash_value(value, &mut hasher);
            Identity::Built(hasher.finish())
        }
    }
}

fn hash_value(value: &Value, hasher: &mut std::hash::DefaultHasher) {
    std::mem::discriminant(value).hash(hasher);
    match value {
        Value::Null => {}
        Value::Bool(b) => b.hash(hasher),
        Value::Number(n) => n.hash(hasher),
        Value::String(s) => s.hash(hasher),
        Value::Array(items) => items.iter().for_each(|item| hash_value(item, hasher)),
        Value::Object(map) => map.iter().for_each(|(key, item)| {
            key.hash(hasher);
            hash_value(item, hasher);
        }),
    }
}

/// A problem at `path`.
pub(super) fn problem(rule: &'static str, path: &str, message: String) -> Problem {
    Problem {
        rule,
        path: path.to_string(),
        message,
    }
}

/// `key` as a JSON pointer segment.
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether `schema` accepts every document: `true`, or only annotations.
pub(super) fn accepts_everything(schema: &Value) -> bool {
    match schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(map) => map.keys().all(|key| is_annotation(key)),
        _ => false,
    }
}

/// Whether `schema` accepts no document: `false`, or `not` of a schema that accepts all.
pub(super) fn rejects_everything(schema: &Value) -> bool {
    *schema == Value::Bool(false) || schema.get("not").is_some_and(accepts_everything)
}

/// The subschema under `key` of `node`, borrowed from the document when `node` is.
pub(super) fn child_of<'a>(node: &Node<'a>, key: &str) -> Option<Node<'a>> {
    match node {
        Cow::Borrowed(value) => value.get(key).map(Cow::Borrowed),
        Cow::Owned(value) => value.get(key).cloned().map(Cow::Owned),
    }
}

/// The `anyOf` (or else `oneOf`) branches of `node`, with the keyword.
fn disjunction<'a>(node: &Node<'a>) -> Option<(&'static str, Vec<Node<'a>>)> {
    ["anyOf", "oneOf"]
        .into_iter()
        .find_map(|keyword| Some((keyword, list(node, keyword)?)))
}

/// The subschemas of the array under `key` of `node` (`allOf`, `prefixItems`, …).
pub(super) fn list<'a>(node: &Node<'a>, key: &str) -> Option<Vec<Node<'a>>> {
    match node {
        Cow::Borrowed(value) => Some(
            value
                .get(key)?
                .as_array()?
                .iter()
                .map(Cow::Borrowed)
                .collect(),
        ),
        Cow::Owned(value) => Some(
            value
                .get(key)?
                .as_array()?
                .iter()
                .cloned()
                .map(Cow::Owned)
                .collect(),
        ),
    }
}

/// The members of the object under `key` of `node` (`properties`, …), in key order.
pub(super) fn members<'a>(node: &Node<'a>, key: &str) -> Vec<(String, Node<'a>)> {
    let owned = |map: &Map<String, Value>| -> Vec<(String, Node<'a>)> {
        map.iter()
            .map(|(k, v)| (k.clone(), Cow::Owned(v.clone())))
            .collect()
    };
    match node {
        Cow::Borrowed(value) => match value.get(key).and_then(Value::as_object) {
            Some(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), Cow::Borrowed(v)))
                .collect(),
            None => Vec::new(),
        },
        Cow::Owned(value) => value
            .get(key)
            .and_then(Value::as_object)
            .map(owned)
            .unwrap_or_default(),
    }
}

/// `node` without `key` (a built schema).
pub(super) fn without<'a>(node: &Node<'a>, key: &str) -> Node<'a> {
    match &**node {
        Value::Object(map) => {
            let mut map = map.clone();
            map.remove(key);
            Cow::Owned(Value::Object(map))
        }
        _ => node.clone(),
    }
}
