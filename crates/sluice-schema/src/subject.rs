//! What the registry stores, and which subject describes which events.
//!
//! **Subjects and events.** A tenant's subjects are its own: two tenants may both have an
//! `Order Completed-value`. At the collector a subject describes one part of one kind of
//! event, named after Confluent's `TopicNameStrategy` (`<name>-value`):
//!
//! | event | subject | validates |
//! |---|---|---|
//! | `track` named `E` | `E-value` (`Order Completed-value`) | `properties` |
//! | `page` | `segment.page-value` | `properties` |
//! | `screen` | `segment.screen-value` | `properties` |
//! | `identify` | `segment.identify-value` | `traits` |
//! | `group` | `segment.group-value` | `traits` |
//! | `alias` | none | nothing to validate |
//!
//! The latest JSON Schema version of the subject validates; an Avro subject describes records
//! of a Kafka source and is not used at the collector. Any other subject name is free for
//! Kafka sources and clients (`orders-value`, …).

use crate::model::{Compatibility, SchemaType};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One version of one subject, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The schema's id: the same text of the same type has one id in a tenant, whatever the
    /// subject; ids are unique across tenants (the wire format carries only the id).
    pub id: u32,
    /// The tenant the subject belongs to.
    pub tenant: String,
    /// The subject.
    pub subject: String,
    /// 1, 2, …: never reused within the subject, even after a delete.
    pub version: u32,
    /// The schema's language.
    pub schema_type: SchemaType,
    /// The schema in canonical form (see [`crate::parse::canonical`]).
    pub schema: String,
    /// Soft-deleted: hidden unless asked for, kept until deleted permanently.
    pub deleted: bool,
}

/// The settings of a tenant (`subject` empty) or of one of its subjects; what is unset falls
/// back to the tenant's, then to the `[schemas]` config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectConfig {
    /// The tenant.
    pub tenant: String,
    /// The subject, or empty for the tenant's own settings.
    pub subject: String,
    /// The compatibility level new versions are checked at.
    pub compatibility: Option<Compatibility>,
    /// What the collector does with events this subject describes.
    pub validation: Option<ValidationMode>,
    /// What the collector does with events no subject describes (tenant level only).
    pub unknown_events: Option<UnknownEvents>,
}

/// What the collector does with an event a subject describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValidationMode {
    /// Not validated.
    #[default]
    Off,
    /// Validated; an invalid event is kept, marked with its violations (`schema_violations`),
    /// and counted.
    Warn,
    /// Validated; an invalid event is rejected with every violation and dead-lettered.
    Enforce,
}

/// What the collector does with an event no subject describes, when validation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownEvents {
    /// Kept as it is.
    #[default]
    Allow,
    /// Rejected (`unknown_event`) and dead-lettered.
    Reject,
}

macro_rules! named {
    ($type:ty, $what:literal, $($variant:ident = $name:literal),+) => {
        impl $type {
            /// The name used in config and the API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text.to_ascii_lowercase().as_str() {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(format!(
                        concat!("{:?} is not ", $what, ": use ", $("\"", $name, "\" "),+),
                        text
                    ).trim_end().replace("\" \"", "\", \"")),
                }
            }
        }
    };
}

named!(
    ValidationMode,
    "a validation mode",
    Off = "off",
    Warn = "warn",
    Enforce = "enforce"
);
named!(
    UnknownEvents,
    "an unknown-events setting",
    Allow = "allow",
    Reject = "reject"
);

/// The subjects of the collector's event kinds other than `track`.
pub const PAGE_SUBJECT: &str = "segment.page-value";
/// See [`PAGE_SUBJECT`].
pub const SCREEN_SUBJECT: &str = "segment.screen-value";
/// See [`PAGE_SUBJECT`].
pub const IDENTIFY_SUBJECT: &str = "segment.identify-value";
/// See [`PAGE_SUBJECT`].
pub const GROUP_SUBJECT: &str = "segment.group-value";

/// The longest subject name accepted.
pub const MAX_SUBJECT_BYTES: usize = 512;

/// Checks a subject name: not empty, within [`MAX_SUBJECT_BYTES`], no control characters.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
        return Err(format!(
            "a subject name is 1 to {MAX_SUBJECT_BYTES} bytes, not {}",
            subject.len()
        ));
    }
    if subject.chars().any(char::is_control) {
        return Err(format!("subject {subject:?} contains a control character"));
    }
    Ok(())
}

/// The subject that describes events of this kind (and track name).
pub fn subject_of(kind: sluice_core::EventType, event: Option<&str>) -> String {
    use sluice_core::EventType;
    match kind {
        EventType::Track => format!("{}-value", event.unwrap_or_default()),
        EventType::Page => PAGE_SUBJECT.to_owned(),
        EventType::Screen => SCREEN_SUBJECT.to_owned(),
        EventType::Identify => IDENTIFY_SUBJECT.to_owned(),
        EventType::Group => GROUP_SUBJECT.to_owned(),
        EventType::Alias => String::new(),
    }
}

/// The track event a subject describes (`Order Completed-value` → `Order Completed`), if it
/// names one.
pub fn track_event(subject: &str) -> Option<&str> {
    if [
        PAGE_SUBJECT,
        SCREEN_SUBJECT,
        IDENTIFY_SUBJECT,
        GROUP_SUBJECT,
    ]
    .contains(&subject)
    {
        return None;
    }
    subject
        .strip_suffix("-value")
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_every_choice_on_error() {
        assert_eq!("WARN".parse::<ValidationMode>(), Ok(ValidationMode::Warn));
        assert_eq!("reject".parse::<UnknownEvents>(), Ok(UnknownEvents::Reject));
        let error = "strict".parse::<ValidationMode>().unwrap_err();
        assert_eq!(
            error,
            "\"strict\" is not a validation mode: use \"off\", \"warn\", \"enforce\""
        );
    }

    #[test]
    fn subjects_name_track_events_and_reserve_the_other_kinds() {
        assert_eq!(
            track_event("Order Completed-value"),
            Some("Order Completed")
        );
        assert_eq!(track_event(PAGE_SUBJECT), None);
        assert_eq!(track_event("orders-key"), None);
        assert_eq!(track_event("-value"), None);
        assert!(check_subject("").is_err());
        assert!(check_subject("a\u{7}b").is_err());
        assert!(check_subject(&"x".repeat(MAX_SUBJECT_BYTES + 1)).is_err());
    }
}
