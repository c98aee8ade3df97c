//! The views and the projectors that keep them, run inside the writer's
//! transaction (docs/projections.md).
//!
//! - [`view`]: what a view table is (columns, row, row changes, SQL), and
//!   [`projector`]: how a view follows the log. Each view defines both once,
//!   in its own file under [`views`]; [`registry`] is the one list of them.
//! - [`facts`]: what projectors look up in the log (a task's TaskCreated, a
//!   workflow's owner and tasks), as of the event being applied; [`rows`]:
//!   the rows a run changes in memory, generic over the view; [`cache`]: the
//!   two together for one run, and the [`Ctx`](cache::Ctx) a projector
//!   works with; [`bounded`]: their bounded maps.
//! - [`dispatch`]: a command's events, catch-up and rebuild batches;
//!   [`apply`]: one event to the views; [`tracking`]: the views' positions;
//!   [`correct`]: the rows another writer projected, derived again.
//! - [`decode`] and [`convert`]: stored events read for projection, and
//!   event values turned into column values.
//!
//! A projector keeps no state in memory beyond one run of events (one
//! transaction, or the batches of one SQLite rebuild): what it needs is read
//! from the event store or its own view table, through the run's cache (see
//! `cache.rs` for why that cache never changes a view row). Before applying
//! new events a projector applies every event between its tracking position
//! and them, so it never skips one; its tracking row advances in the same
//! transaction.

pub mod apply;
pub mod bounded;
pub mod cache;
pub mod convert;
pub mod correct;
pub mod decode;
pub mod dispatch;
pub mod facts;
pub mod projector;
pub mod registry;
pub mod rows;
pub mod tracking;
pub mod view;
pub mod views;

pub use dispatch::{catch_up, project, project_ahead, BATCH, CARRY_GAP};
pub use registry::{parse_views, tracking_tables, View};
pub use tracking::{position, positions, set_position};
