//! The view rows a run of events changes in memory (catch-up, rebuild,
//! correction), generic over the view table: a touched row is read once (or
//! known to be absent), changed in memory, and written back by
//! [`RowCache::flush`], which the caller runs before it commits (and after
//! each batch of events, which also bounds memory). A row in memory is
//! therefore exactly what the same statements would have left in the table.
//! No code here knows a particular view.

use crate::error::Result;
use crate::projections::bounded::{key_hash, Bloom, Gen};
use crate::projections::view::{self, Patch, RowKey, ViewRow, ViewTable};
use crate::store::{NoRow, Tx};
use std::any::Any;

/// A view row held in memory: its state (None = no row) and whether the
/// table still has to be told.
struct Slot<R> {
    row: Option<R>,
    dirty: bool,
}

/// The rows of one view table held in memory.
struct Rows<V: ViewTable> {
    map: Gen<<V::Row as ViewRow>::Key, Slot<V::Row>>,
}

/// A [`Rows`] of any view.
trait AnyRows: Send {
    /// Writes the changed rows.
    fn flush(&mut self, tx: &mut dyn Tx) -> Result<()>;
    /// Drops what the last generation did not use, passing each dropped
    /// key's hash to `dropped`.
    fn rotate(&mut self, capacity: usize, dropped: &mut dyn FnMut(u64));
    fn len(&self) -> usize;
    fn as_any(&mut self) -> &mut dyn Any;
}

/// The tag of a view's keys in the Bloom filter: a hash of its table name.
fn tag<V: ViewTable>() -> u64 {
    V::SPEC.table.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl<V: ViewTable> AnyRows for Rows<V> {
    fn flush(&mut self, tx: &mut dyn Tx) -> Result<()> {
        for (key, slot) in self.map.values_mut() {
            if std::mem::take(&mut slot.dirty) {
                match &slot.row {
                    Some(row) => view::write::<V>(tx, row)?,
                    None => view::delete::<V>(tx, *key)?,
                }
            }
        }
        Ok(())
    }

    fn rotate(&mut self, capacity: usize, dropped: &mut dyn FnMut(u64)) {
        let tag = tag::<V>();
        self.map
            .rotate(capacity, |k| dropped(key_hash(tag, k.bits())));
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The rows of every view a run changes.
pub struct RowCache {
    tables: Vec<Box<dyn AnyRows>>,
    /// The view tables were emptied when this cache started and only it has
    /// written them since: a row it has never seen (nor evicted) is absent.
    fresh: bool,
    /// Keys dropped from memory while `fresh` (a false positive costs a
    /// read).
    evicted: Option<Bloom>,
    /// Statements run to read rows (for tests and measurements).
    pub lookups: u64,
}

/// Logs `no_row` when a patch found no row.
fn log_if_unchanged(changed: bool, no_row: Option<NoRow>) {
    if let (false, Some(note)) = (changed, no_row) {
        note.log();
    }
}

impl RowCache {
    pub fn new(fresh: bool) -> RowCache {
        RowCache {
            tables: Vec::new(),
            fresh,
            evicted: None,
            lookups: 0,
        }
    }

    /// The rows of view `V` (made on first use).
    fn rows<V: ViewTable>(&mut self) -> &mut Rows<V> {
        let i = match self
            .tables
            .iter_mut()
            .position(|t| t.as_any().is::<Rows<V>>())
        {
            Some(i) => i,
            None => {
                self.tables.push(Box::new(Rows::<V> { map: Gen::new() }));
                self.tables.len() - 1
            }
        };
        self.tables[i]
            .as_any()
            .downcast_mut::<Rows<V>>()
            .expect("the type checked above")
    }

    /// The slot of `key`: read from the table when `read` and the row may
    /// exist there, else known absent.
    fn slot<V: ViewTable>(
        &mut self,
        tx: &mut dyn Tx,
        key: <V::Row as ViewRow>::Key,
        read: bool,
    ) -> Result<&mut Slot<V::Row>> {
        if self.rows::<V>().map.get_mut(&key).is_none() {
            let maybe_evicted = self
                .evicted
                .as_ref()
                .is_some_and(|b| b.may_contain(key_hash(tag::<V>(), key.bits())));
            let row = if !read || (self.fresh && !maybe_evicted) {
                None
            } else {
                self.lookups += 1;
                view::get_utc::<V>(tx, key)?
            };
            self.rows::<V>().map.insert(key, Slot { row, dirty: false });
        }
        Ok(self.rows::<V>().map.get_mut(&key).expect("inserted"))
    }

    /// Writes a whole row.
    pub fn put<V: ViewTable>(&mut self, tx: &mut dyn Tx, row: V::Row) -> Result<()> {
        let slot = self.slot::<V>(tx, row.key(), false)?;
        slot.row = Some(row);
        slot.dirty = true;
        Ok(())
    }

    /// Changes a row (creating it where the patch does); `no_row` is logged
    /// when there is no row to change.
    pub fn patch<V: ViewTable>(
        &mut self,
        tx: &mut dyn Tx,
        key: <V::Row as ViewRow>::Key,
        patch: V::Patch,
        no_row: Option<NoRow>,
    ) -> Result<()> {
        let slot = self.slot::<V>(tx, key, true)?;
        if slot.row.is_none() {
            slot.row = patch.create(key);
        }
        let changed = match &mut slot.row {
            Some(row) => {
                patch.apply(row);
                true
            }
            None => false,
        };
        slot.dirty |= changed;
        log_if_unchanged(changed, no_row);
        Ok(())
    }

    /// Deletes a row (nothing when there is none).
    pub fn delete<V: ViewTable>(
        &mut self,
        tx: &mut dyn Tx,
        key: <V::Row as ViewRow>::Key,
    ) -> Result<()> {
        let slot = self.slot::<V>(tx, key, true)?;
        if slot.row.take().is_some() {
            slot.dirty = true;
        }
        Ok(())
    }

    /// Writes every changed row.
    pub fn flush(&mut self, tx: &mut dyn Tx) -> Result<()> {
        for t in &mut self.tables {
            t.flush(tx)?;
        }
        Ok(())
    }

    /// Bounds memory (see `bounded.rs`).
    pub fn rotate(&mut self, capacity: usize) {
        let track = self.fresh;
        let mut dropped: Vec<u64> = Vec::new();
        for t in &mut self.tables {
            t.rotate(capacity, &mut |h| {
                if track {
                    dropped.push(h)
                }
            });
        }
        if !dropped.is_empty() {
            let bloom = self.evicted.get_or_insert_with(Bloom::new);
            for h in dropped {
                bloom.insert(h);
            }
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
