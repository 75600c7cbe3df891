//! Arbitrary bytes as stored partial aggregate states and group keys (the store hands them
//! back after a restart): decoding rejects or accepts, never panics, and what it accepts
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_stream::agg::PartialState;
use sluice_stream::keys::GroupKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = PartialState::decode(data, None) {
        assert_eq!(PartialState::decode(&state.encode(), None).unwrap(), state);
    }
    if let Ok(key) = GroupKey::from_bytes(data) {
        assert_eq!(key.as_bytes(), data);
    }
});
