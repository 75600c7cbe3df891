//! Validation at the collector: a snapshot of compiled validators per tenant and event, asked
//! about every event, and the violations it finds.
//!
//! **Which rules apply.** For an event of a tenant (see [`crate::subject`] for which subject
//! describes which event):
//! 1. the subject's latest live JSON Schema version validates the event's `properties` (or
//!    `traits`); a missing object is validated as `{}`, so required properties are required;
//! 2. the mode is the subject's `validation` setting, else the tenant's, else the
//!    `[schemas]` config's: `off` skips it, `warn` keeps an invalid event marked with its
//!    violations, `enforce` rejects it with every violation;
//! 3. an event no subject describes, in a tenant whose mode is not `off`, is kept unless the
//!    tenant's `unknown-events` is `reject` — then it is rejected (`enforce`) or marked
//!    (`warn`).
//!
//! **Cost.** A tenant with no subject and mode `off` costs one hash lookup. A schema of the
//! common flat shape (see [`crate::flat`]) checks a valid event on its JSON text, without
//! building a `serde_json::Value`; any other schema, and any event the fast path is not sure
//! of, costs parsing its properties into a `Value` and walking the compiled schema, which
//! also lists the violations (the criterion bench `validate` measures both). Compiling
//! happens when a version is registered, not per event; a snapshot reuses the compiled
//! validators of the schema ids it shares with the previous one.
//!
//! **Bounds.** Patterns use the `regex` crate (linear time, with a compiled size limit), so no
//! pattern makes validation slow; at most [`MAX_VIOLATIONS`] violations are reported per event,
//! each message cut at [`MAX_MESSAGE_BYTES`].

use crate::flat::Flat;
use crate::model::SchemaType;
use crate::registry::Registry;
use crate::subject::{
    GROUP_SUBJECT, IDENTIFY_SUBJECT, PAGE_SUBJECT, SCREEN_SUBJECT, UnknownEvents, ValidationMode,
};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_core::EventType;
use std::collections::HashMap;

/// Maps looked up once or twice per event: a fast hash (keys are tenant and event names, which
/// only registered schemas put in them).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

/// The most violations reported for one event.
pub const MAX_VIOLATIONS: usize = 50;

/// The longest message of one violation: messages quote the offending value, which can be
/// as large as the event, and violations are stored with a kept event.
pub const MAX_MESSAGE_BYTES: usize = 256;

/// The largest compiled size of one `pattern`.
pub(crate) const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One way an event breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where in the event, as a JSON pointer (`/properties/revenue`).
    pub path: String,
    /// The schema keyword that failed (`type`, `required`, …).
    pub keyword: String,
    /// What is wrong.
    pub message: String,
}

/// What the collector does with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it as it is.
    Pass,
    /// Keep it, marked with these violations.
    Warn(Vec<Violation>),
    /// Reject it with these violations.
    Reject {
        /// `schema_violation` or `unknown_event`.
        reason: &'static str,
        /// The subject that described it, if one did.
        subject: Option<String>,
        violations: Vec<Violation>,
    },
}

/// Compiles a JSON Schema with the registry's bounds; the error says what is wrong and where.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(PATTERN_SIZE_LIMIT))
        .build(schema)
        .map_err(|error| {
            let at = error.schema_path().as_str();
            let at = if at.is_empty() { "the root" } else { at };
            format!("not a valid JSON Schema at {at}: {error}")
        })
}

/// A schema compiled for the collector: its fast form when it has one (see [`crate::flat`]),
/// and the full validator.
#[derive(Debug)]
struct Compiled {
    flat: Option<Flat>,
    full: jsonschema::Validator,
}

/// One subject's rule.
#[derive(Debug, Clone)]
struct Rule {
    mode: ValidationMode,
    subject: String,
    id: u32,
    validator: Arc<Compiled>,
}

/// One tenant's rules.
#[derive(Debug, Default)]
struct TenantRules {
    mode: ValidationMode,
    unknown: UnknownEvents,
    track: FastMap<String, Rule>,
    /// Page, screen, identify, group.
    kinds: [Option<Rule>; 4],
}

/// The settings that apply where the registry has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `schemas.validation`.
    pub validation: ValidationMode,
    /// `schemas.unknown-events`.
    pub unknown_events: UnknownEvents,
}

/// Every tenant's compiled rules: one immutable snapshot, replaced as a whole when a version
/// or a setting changes.
#[derive(Debug, Default)]
pub struct Validators {
    tenants: FastMap<String, TenantRules>,
    defaults: Defaults,
    /// Compiled validators by schema id, reused by the next snapshot.
    compiled: HashMap<u32, Arc<Compiled>>,
}

impl Validators {
    /// The rules of `registry`, compiling only what `previous` has not.
    pub fn build(registry: &Registry, defaults: Defaults, previous: Option<&Validators>) -> Self {
        let mut compiled = HashMap::new();
        let mut tenants: FastMap<String, TenantRules> = FastMap::default();
        for tenant in registry.tenants() {
            let settings = registry.tenant_settings(tenant);
            let rules = tenants.entry(tenant.to_owned()).or_default();
            rules.mode = settings.validation.unwrap_or(defaults.validation);
            rules.unknown = settings.unknown_events.unwrap_or(defaults.unknown_events);
            for subject in registry.subjects(tenant, false) {
                let Some(latest) = registry.latest(tenant, subject) else {
                    continue;
                };
                if latest.schema_type != SchemaType::Json {
                    continue;
                }
                let validator = match previous
                    .and_then(|p| p.compiled.get(&latest.id))
                    .or_else(|| compiled.get(&latest.id))
                {
                    Some(validator) => Arc::clone(validator),
                    None => {
                        let value: Value = match serde_json::from_str(&latest.schema) {
                            Ok(value) => value,
                            Err(_) => continue,
                        };
                        match compile(&value) {
                            Ok(full) => Arc::new(Compiled {
                                flat: Flat::compile(&value),
                                full,
                            }),
                            // Registered schemas compiled when they were registered; one that
                            // no longer does (a newer build) validates nothing rather than
                            // rejecting every event.
                            Err(error) => {
                                tracing::warn!(tenant, subject, %error, "a registered schema no longer compiles; events of its subject are not validated");
                                continue;
                            }
                        }
                    }
                };
                compiled.insert(latest.id, Arc::clone(&validator));
                let mode = registry
                    .subject_settings(tenant, subject)
                    .and_then(|s| s.validation)
                    .unwrap_or(rules.mode);
                let rule = Rule {
                    mode,
                    subject: subject.to_owned(),
                    id: latest.id,
                    validator,
                };
                let slot = match subject {
                    PAGE_SUBJECT => Some(0),
                    SCREEN_SUBJECT => Some(1),
                    IDENTIFY_SUBJECT => Some(2),
                    GROUP_SUBJECT => Some(3),
                    _ => None,
                };
                match (slot, crate::subject::track_event(subject)) {
                    (Some(slot), _) => rules.kinds[slot] = Some(rule),
                    (None, Some(event)) => {
                        rules.track.insert(event.to_owned(), rule);
                    }
                    (None, None) => {}
                }
            }
        }
        Validators {
            tenants,
            defaults,
            compiled,
        }
    }

    /// What to do with an event of `tenant`: its type, track name and the object its subject
    /// validates (`properties`, or `traits` for identify and group).
    pub fn check(
        &self,
        tenant: &str,
        kind: EventType,
        event: Option<&str>,
        payload: Option<&RawValue>,
    ) -> Verdict {
        let (mode, unknown, rule) = match self.tenants.get(tenant) {
            Some(rules) => {
                let rule = match kind {
                    EventType::Track => event.and_then(|name| rules.track.get(name)),
                    EventType::Page => rules.kinds[0].as_ref(),
                    EventType::Screen => rules.kinds[1].as_ref(),
                    EventType::Identify => rules.kinds[2].as_ref(),
                    EventType::Group => rules.kinds[3].as_ref(),
                    EventType::Alias => return Verdict::Pass,
                };
                (rules.mode, rules.unknown, rule)
            }
            None => (self.defaults.validation, self.defaults.unknown_events, None),
        };
        let Some(rule) = rule else {
            return unknown_verdict(mode, unknown, kind, event);
        };
        if rule.mode == ValidationMode::Off {
            return Verdict::Pass;
        }
        let field = match kind {
            EventType::Identify | EventType::Group => "traits",
            _ => "properties",
        };
        let compiled = &rule.validator;
        if compiled
            .flat
            .as_ref()
            .is_some_and(|flat| flat.accepts(payload.map(RawValue::get)))
        {
            return Verdict::Pass;
        }
        let instance = match payload.map(|raw| serde_json::from_str::<Value>(raw.get())) {
            Some(Ok(value)) => value,
            // The collector parsed it already; an object it cannot parse twice is not one.
            Some(Err(_)) => Value::Null,
            None => Value::Object(serde_json::Map::new()),
        };
        if compiled.full.is_valid(&instance) {
            return Verdict::Pass;
        }
        let violations = compiled
            .full
            .iter_errors(&instance)
            .take(MAX_VIOLATIONS)
            .map(|error| violation(field, &error))
            .collect();
        match rule.mode {
            ValidationMode::Enforce => Verdict::Reject {
                reason: "schema_violation",
                subject: Some(rule.subject.clone()),
                violations,
            },
            _ => Verdict::Warn(violations),
        }
    }

    /// The schema id validating events of `tenant` of this kind and name, if any (for
    /// counters and tests).
    pub fn schema_id(&self, tenant: &str, kind: EventType, event: Option<&str>) -> Option<u32> {
        let rules = self.tenants.get(tenant)?;
        let rule = match kind {
            EventType::Track => rules.track.get(event?),
            EventType::Page => rules.kinds[0].as_ref(),
            EventType::Screen => rules.kinds[1].as_ref(),
            EventType::Identify => rules.kinds[2].as_ref(),
            EventType::Group => rules.kinds[3].as_ref(),
            EventType::Alias => None,
        };
        rule.map(|rule| rule.id)
    }
}

fn unknown_verdict(
    mode: ValidationMode,
    unknown: UnknownEvents,
    kind: EventType,
    event: Option<&str>,
) -> Verdict {
    if mode == ValidationMode::Off || unknown == UnknownEvents::Allow || kind == EventType::Alias {
        return Verdict::Pass;
    }
    let subject = crate::subject::subject_of(kind, event);
    let violation = Violation {
        path: String::new(),
        keyword: "unknown_event".to_owned(),
        message: format!(
            "no schema describes this event: register one under the subject {subject:?}, or set unknown-events = \"allow\""
        ),
    };
    match mode {
        ValidationMode::Enforce => Verdict::Reject {
            reason: "unknown_event",
            subject: None,
            violations: vec![violation],
        },
        _ => Verdict::Warn(vec![violation]),
    }
}

fn violation(field: &str, error: &jsonschema::ValidationError<'_>) -> Violation {
    let schema_path = error.schema_path().as_str();
    let keyword = schema_path
        .rsplit('/')
        .next()
        .filter(|k| !k.is_empty())
        .unwrap_or("schema")
        .to_owned();
    let mut message = error.to_string();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    Violation {
        path: format!("/{field}{}", error.instance_path().as_str()),
        keyword,
        message,
    }
}

/// The current [`Validators`], shared by the registry (which replaces them) and the collector
/// (which reads them per request).
#[derive(Debug, Default)]
pub struct SharedValidators(RwLock<Arc<Validators>>);

impl SharedValidators {
    /// The current snapshot.
    pub fn current(&self) -> Arc<Validators> {
        Arc::clone(&self.0.read())
    }

    /// Makes `next` the current snapshot.
    pub fn replace(&self, next: Validators) {
        *self.0.write() = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::SubjectConfig;
    use crate::{Compatibility, SchemaVersion};

    fn version(id: u32, subject: &str, schema: &str) -> SchemaVersion {
        SchemaVersion {
            id,
            tenant: "shop".into(),
            subject: subject.into(),
            version: 1,
            schema_type: SchemaType::Json,
            schema: schema.into(),
            deleted: false,
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    fn validators(settings: Vec<SubjectConfig>) -> Validators {
        let registry = Registry::new(
            vec![
                version(
                    1,
                    "Order Completed-value",
                    r#"{"required": ["revenue"], "properties": {"revenue": {"type": "number"}}}"#,
                ),
                version(
                    2,
                    "segment.identify-value",
                    r#"{"properties": {"email": {"type": "string", "pattern": "^(a+)+$"}}}"#,
                ),
            ],
            settings,
            Compatibility::Backward,
        );
        Validators::build(&registry, Defaults::default(), None)
    }

    fn tenant(validation: ValidationMode, unknown: UnknownEvents) -> SubjectConfig {
        SubjectConfig {
            tenant: "shop".into(),
            validation: Some(validation),
            unknown_events: Some(unknown),
            ..SubjectConfig::default()
        }
    }

    #[test]
    fn modes_decide_what_an_invalid_event_comes_to() {
        let bad = raw(r#"{"revenue": "lots"}"#);
        let order = |v: &Validators| {
            v.check(
                "shop",
                EventType::Track,
                Some("Order Completed"),
                Some(&bad),
            )
        };
        assert_eq!(order(&validators(vec![])), Verdict::Pass, "off by default");
        let warn = validators(vec![tenant(ValidationMode::Warn, UnknownEvents::Allow)]);
        let Verdict::Warn(violations) = order(&warn) else {
            panic!("warn keeps the event")
        };
        assert_eq!(
            violations,
            [Violation {
                path: "/properties/revenue".into(),
                keyword: "type".into(),
                message: r#""lots" is not of type "number""#.into(),
            }]
        );
        let enforce = validators(vec![tenant(ValidationMode::Enforce, UnknownEvents::Allow)]);
        assert!(matches!(
            order(&enforce),
            Verdict::Reject { reason: "schema_violation", subject: Some(ref s), .. } if s == "Order Completed-value"
        ));
        // Missing properties are validated as {}: required ones are still required.
        let Verdict::Reject { violations, .. } =
            enforce.check("shop", EventType::Track, Some("Order Completed"), None)
        else {
            panic!("no properties at all is not a valid order")
        };
        assert_eq!(violations[0].keyword, "required");
        // A subject's own mode wins over its tenant's.
        let relaxed = validators(vec![
            tenant(ValidationMode::Enforce, UnknownEvents::Allow),
            SubjectConfig {
                tenant: "shop".into(),
                subject: "Order Completed-value".into(),
                validation: Some(ValidationMode::Off),
                ..SubjectConfig::default()
            },
        ]);
        assert_eq!(order(&relaxed), Verdict::Pass);
        // Another tenant is untouched; aliases are never validated.
        assert_eq!(
            enforce.check(
                "blog",
                EventType::Track,
                Some("Order Completed"),
                Some(&bad)
            ),
            Verdict::Pass
        );
        assert_eq!(
            enforce.check("shop", EventType::Alias, None, None),
            Verdict::Pass
        );
    }

    #[test]
    fn unknown_events_are_kept_marked_or_rejected() {
        let enforce = validators(vec![tenant(ValidationMode::Enforce, UnknownEvents::Reject)]);
        let Verdict::Reject {
            reason, violations, ..
        } = enforce.check("shop", EventType::Track, Some("Cart Viewed"), None)
        else {
            panic!("an event no schema describes is rejected")
        };
        assert_eq!(reason, "unknown_event");
        assert!(violations[0].message.contains("\"Cart Viewed-value\""));
        assert!(matches!(
            enforce.check("shop", EventType::Page, None, None),
            Verdict::Reject {
                reason: "unknown_event",
                ..
            }
        ));
        let warn = validators(vec![tenant(ValidationMode::Warn, UnknownEvents::Reject)]);
        assert!(matches!(
            warn.check("shop", EventType::Track, Some("Cart Viewed"), None),
            Verdict::Warn(_)
        ));
        let allow = validators(vec![tenant(ValidationMode::Enforce, UnknownEvents::Allow)]);
        assert_eq!(
            allow.check("shop", EventType::Track, Some("Cart Viewed"), None),
            Verdict::Pass
        );
    }

    #[test]
    fn patterns_run_in_linear_time_and_backreferences_are_refused() {
        // (a+)+$ against a long run of a's ending in '!' takes a backtracking engine
        // exponential time; this one answers at once.
        let enforce = validators(vec![tenant(ValidationMode::Enforce, UnknownEvents::Allow)]);
        let bomb = raw(&format!(r#"{{"email": "{}!"}}"#, "a".repeat(5_000)));
        let Verdict::Reject { violations, .. } =
            enforce.check("shop", EventType::Identify, None, Some(&bomb))
        else {
            panic!("the pattern does not match")
        };
        assert_eq!(violations[0].path, "/traits/email");
        assert_eq!(violations[0].keyword, "pattern");
        assert!(
            violations[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8(),
            "the 5,000-byte value is not repeated whole: {}",
            violations[0].message.len()
        );
        // A pattern the linear engine cannot run is an invalid schema, not a slow one.
        let error = compile(&serde_json::json!({"pattern": "(a)\\1"})).unwrap_err();
        assert!(error.contains("not a valid JSON Schema"), "{error}");
    }
}
