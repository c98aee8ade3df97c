//! The domain: values, the event codec, events, upcasters and the two
//! aggregates. Pure Rust: no I/O, no Python.

pub mod aggregates;
pub mod codec;
pub mod event_type;
pub mod events;
pub mod upcasters;
pub mod value;

pub use aggregates::{Aggregate, TaskState, WorkflowRunState};
pub use events::{Event, EventType, Payload};
pub use upcasters::Upcasters;
pub use value::Value;
