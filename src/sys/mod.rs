//! Process-level plumbing: state that belongs to one process (a forked
//! child starts afresh) and the interrupt hook (Ctrl-C).

pub mod interrupt;
pub mod process;
