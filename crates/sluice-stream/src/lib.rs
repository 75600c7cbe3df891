//! The stream engine (work in progress).

pub mod agg;
pub mod decimal;
pub mod error;
pub mod eval;
pub mod json;
pub mod keys;
pub mod plan;
pub mod sql;
pub mod window;

pub use error::{SqlError, StreamError};
