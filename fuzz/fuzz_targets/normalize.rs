//! Arbitrary request bodies through the collector's parsing and normalization: every input
//! must yield events or errors with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::config::ByteSize;
use sluice_core::normalize::{NormalizeContext, normalize, parse_batch, parse_sent_at};
use sluice_core::{EventType, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_event_bytes: ByteSize(32 * 1024),
        max_batch_bytes: ByteSize(500 * 1024),
        max_depth: 16,
        max_string_bytes: ByteSize(1024),
        max_id_bytes: ByteSize(256),
        max_name_bytes: ByteSize(256),
    };
    let base = NormalizeContext {
        tenant: "fuzz",
        received_at: 1_700_000_000_000,
        limits: &limits,
        endpoint: Some(EventType::Track),
        batch_sent_at: None,
        batch_context: None,
        index: None,
    };
    if let Ok(event) = normalize(data, &base) {
        assert!(event.user_id.is_some() || event.anonymous_id.is_some());
        let _ = event.to_json();
    }
    if let Ok(batch) = parse_batch(data, &limits) {
        let sent_at = parse_sent_at(batch.sent_at.as_deref(), "sentAt").ok().flatten();
        for (index, message) in batch.batch.iter().enumerate() {

            let ctx = NormalizeContext {
                endpoint: None,
                batch_sent_at: sent_at,
                batch_context: batch.context,
                index: Some(index),
                ..base
            };
            if let Err(error) = normalize(message.get().as_bytes(), &ctx) {
                assert!(error.path.starts_with(&format!("batch[{index}]")), "{error}");
            }
        }
    }
});
