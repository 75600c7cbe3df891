//! Arbitrary metric definitions (the runtime API accepts SQL from users): every input must
//! give a plan or an error with a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_stream::plan::LatePolicy;
use sluice_stream::sql::{MetricDefaults, parse_metric};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let defaults = MetricDefaults { out_of_orderness: 10_000, allowed_lateness: 0, late: LatePolicy::Topic };
    if let Err(error) = parse_metric(sql, &defaults) {
        assert!(error.line >= 1 && error.column >= 1);
    }
});
