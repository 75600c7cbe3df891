//! Metric definitions and the event-time window engine. Filled in by the stream-engine issue.
