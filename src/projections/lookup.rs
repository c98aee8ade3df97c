//! What projectors read from the event store (to be written).
