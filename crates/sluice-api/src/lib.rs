//! The query API. Filled in by the serving issue.
