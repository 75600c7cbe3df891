//! The aggregate store. Filled in by the exactly-once issue.
