//! Values that belong to the process that made them.
//!
//! A forked child inherits its parent's memory: pools whose connections are
//! the parent's server sessions or SQLite file handles, caches, and mutexes
//! that another thread of the parent may have held at the moment of the fork.
//! [`ProcessLocal`] keeps a value with the pid of the process that made it;
//! any other process gets a fresh value of its own, and the inherited one is
//! neither used nor dropped (dropping it would close the parent's
//! connections: a Postgres `Terminate` on a shared socket, or an SQLite close
//! that checkpoints and deletes a WAL the parent still writes).

use std::sync::atomic::{AtomicPtr, Ordering};

struct Slot<T> {
    pid: u32,
    value: T,
}

pub struct ProcessLocal<T> {
    slot: AtomicPtr<Slot<T>>,
}

// SAFETY: the slot is only reached through `&self` as `&T` (shared), and is
// freed only by `Drop` (which has `&mut self`); T: Send + Sync makes sharing
// and moving the value between threads sound.
unsafe impl<T: Send + Sync> Send for ProcessLocal<T> {}
unsafe impl<T: Send + Sync> Sync for ProcessLocal<T> {}

impl<T> Default for ProcessLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ProcessLocal<T> {
    pub const fn new() -> Self {
        ProcessLocal {
            slot: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// A ProcessLocal holding `value` for this process.
    pub fn with(value: T) -> Self {
        let slot = Box::into_raw(Box::new(Slot {
            pid: std::process::id(),
            value,
        }));
        ProcessLocal {
            slot: AtomicPtr::new(slot),
        }
    }

    /// This process's value, if it has one.
    pub fn get(&self) -> Option<&T> {
        let p = self.slot.load(Ordering::Acquire);
        // SAFETY: a published slot is freed only by Drop or `take` (both &mut).
        (!p.is_null())
            .then(|| unsafe { &*p })
            .filter(|s| s.pid == std::process::id())
            .map(|s| &s.value)
    }

    /// This process's value, made by `make` the first time this process
    /// asks. (Two threads may both make one; one is kept.)
    pub fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        if let Some(v) = self.get() {
            return Ok(v);
        }
        let pid = std::process::id();
        let new = Box::into_raw(Box::new(Slot {
            pid,
            value: make()?,
        }));
        let mut current = self.slot.load(Ordering::Acquire);
        loop {
            // SAFETY: see `get`.
            if !current.is_null() && unsafe { (*current).pid } == pid {
                // Another thread of this process was first: keep its value.
                // SAFETY: `new` was never published.
                drop(unsafe { Box::from_raw(new) });
                return Ok(unsafe { &(*current).value });
            }
            // An empty slot, or the parent's: replace it. The parent's is
            // leaked on purpose (see the module's documentation).
            match self
                .slot
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: `new` is now published and freed only by Drop.
                Ok(_) => return Ok(unsafe { &(*new).value }),
                Err(c) => current = c,
            }
        }
    }

    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        match self.get_or_try_init(|| Ok::<T, std::convert::Infallible>(make())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }
}

impl<T> Drop for ProcessLocal<T> {
    fn drop(&mut self) {
        let p = *self.slot.get_mut();
        // SAFETY: `p` was made by Box::into_raw and nobody borrows it (&mut self).
        if !p.is_null() && unsafe { (*p).pid } == std::process::id() {
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessLocal;

    #[test]
    fn one_value_per_process() {
        let p: ProcessLocal<u32> = ProcessLocal::new();
        assert!(p.get().is_none());
        assert_eq!(*p.get_or_init(|| 7), 7);
        assert_eq!(*p.get_or_init(|| 8), 7);
        let q = ProcessLocal::with(String::from("x"));
        assert_eq!(q.get().map(String::as_str), Some("x"));
    }
}
