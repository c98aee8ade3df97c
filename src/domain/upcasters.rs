//! Versioning of stored events: an upcaster chain keyed by event type and
//! `class_version`, as eventsourcing's `upcast_vX_vY` static methods.
//!
//! Every event type is at class_version 1 today, so the standard chain is
//! empty. When an event's shape changes, bump its version here and register a
//! step that rewrites the previous shape; stored events are then read as the
//! current shape, and new ones carry `"class_version": N` as Python writes it.

use crate::domain::event_type::EventType;
use crate::domain::value::Value;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Rewrites the state fields of version N into version N + 1, in place.
pub type UpcastStep = fn(&mut Vec<(String, Value)>);

#[derive(Default)]
pub struct Upcasters {
    current: HashMap<EventType, u32>,
    steps: HashMap<(EventType, u32), UpcastStep>,
}

impl Upcasters {
    /// The chain this release reads and writes with.
    pub fn standard() -> &'static Upcasters {
        static STANDARD: OnceLock<Upcasters> = OnceLock::new();
        STANDARD.get_or_init(Upcasters::default)
    }

    /// The class_version new events of `ty` are written with.
    pub fn current_version(&self, ty: EventType) -> u32 {
        self.current.get(&ty).copied().unwrap_or(1)
    }

    /// Registers the step from `from_version` to `from_version + 1` and makes
    /// the type's current version at least `from_version + 1`.
    pub fn register(&mut self, ty: EventType, from_version: u32, step: UpcastStep) -> &mut Self {
        self.steps.insert((ty, from_version), step);
        let cur = self.current.entry(ty).or_insert(1);
        *cur = (*cur).max(from_version + 1);
        self
    }

    /// Brings `fields`, stored at `stored_version`, to the current shape.
    pub fn upcast(
        &self,
        ty: EventType,
        stored_version: u32,
        fields: &mut Vec<(String, Value)>,
    ) -> Result<()> {
        let current = self.current_version(ty);
        if stored_version > current {
            return Err(Error::decode(format!(
                "{} was stored at class_version {stored_version}, newer than this release reads ({current})",
                ty.topic()
            )));
        }
        for v in stored_version..current {
            let step = self.steps.get(&(ty, v)).ok_or_else(|| {
                Error::decode(format!(
                    "no upcaster for {} from class_version {v}",
                    ty.topic()
                ))
            })?;
            step(fields);
        }
        Ok(())
    }
}
