//! biomero_rs: BIOMERO's event store and view projectors in Rust.
//!
//! Layers: [`domain`] (events, aggregates, codec; pure), [`store`] (the event
//! store on SQLite or Postgres), [`projections`] (the four views),
//! [`tracker`] (the application service), and the Python bindings in
//! `python` (built with the `python` feature).

pub mod app;
pub mod domain;
pub mod error;
pub mod migrations;
pub mod projections;
pub mod store;
pub mod sys;

#[cfg(feature = "python")]
mod python;

pub use app::tracker::Tracker;
pub use error::{Error, Result};
