//! The four views, one file each: its table (columns, row), the changes of
//! a row, how each event changes it, and its queries. They are registered
//! in `registry.rs`, the one list of views.

pub mod job_accounting;
pub mod job_progress;
pub mod workflow_analytics;
pub mod workflow_progress;
