//! Black-box tests of the log through its public API: the backend contract (written once,
//! generic over [`sluice_log::Log`]), recovery of damaged files, a model-based property test, and
//! a crash test that SIGKILLs a child process appending to the log.

#[path = "log/common.rs"]
mod common;
#[path = "log/contract.rs"]
mod contract;
#[path = "log/crash.rs"]
mod crash;
#[path = "log/model.rs"]
mod model;
#[path = "log/recovery.rs"]
mod recovery;
