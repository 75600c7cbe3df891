//! The HTTP collector (Segment-compatible ingestion). Filled in by the collector issue.
