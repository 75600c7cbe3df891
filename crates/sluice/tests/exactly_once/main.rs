//! Exactly-once results end to end: a real `sluice serve` process is fed events over HTTP and
//! killed with SIGKILL at random moments; after each restart processing resumes from the
//! store's checkpoints, and the final results are compared with the brute-force oracle over
//! every event in the log.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod cluster;
mod crash;
mod faults;
mod golden;
mod log_faults;
mod outage;
mod results;
