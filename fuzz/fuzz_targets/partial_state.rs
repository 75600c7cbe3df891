//! Arbitrary bytes as stored partial aggregate states and group keys (the store hands them
//! back after a restart): decoding rejects or accepts, never panics, and what it accepts
//! re-encodes to the same bytes. A state is decoded as it is and with its last four bytes
//! replaced by the checksum of the rest, so the decoders behind the checksum are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_stream::agg::PartialState;
use sluice_stream::keys::GroupKey;

fuzz_target!(|data: &[u8]| {
    check_state(data);
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        let body = sealed.len() - 4;
        let crc = crc32c::crc32c(&sealed[..body]);
        sealed[body..].copy_from_slice(&crc.to_le_bytes());
        check_state(&sealed);
    }
    if let Ok(key) = GroupKey::from_bytes(data) {
        assert_eq!(key.as_bytes(), data);
    }
});

/// Decodes `data` as a state; whatever decodes must encode to what decodes the same.
fn check_state(data: &[u8]) {
    if let Ok(state) = PartialState::decode(data, None) {
        assert_eq!(PartialState::decode(&state.encode(), None).unwrap(), state);
    }
}
