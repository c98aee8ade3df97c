//! The application: the tracker (commands), the operators' work on the
//! views (rebuild, catch-up, status, verify), and the composition root that
//! opens a database for all of them.

pub mod check;
pub mod db;
pub mod rebuild;
pub mod shadow;
pub mod tracker;
pub mod verify;
