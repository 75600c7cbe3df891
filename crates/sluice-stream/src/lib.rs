//! The stream engine (work in progress).

pub mod agg;
pub mod config;
pub mod decimal;
pub mod engine;
pub mod error;
pub mod eval;
pub mod json;
pub mod keys;
pub mod plan;
pub mod sql;
pub mod synthetic;
pub mod task;
pub mod watermark;
pub mod window;

pub use error::{SqlError, StreamError};
