//! What the projectors know while they apply a run of events: facts about
//! the log prefix read so far (`facts.rs`: a task's TaskCreated, its latest
//! job id and progress; a workflow's owner and tasks) and, when applying
//! many events, the view rows they touch (`rows.rs`). [`Ctx`] is what a
//! projector works with: the facts it looks up and the row changes it
//! makes; it never sees how either is kept.
//!
//! # Correctness
//!
//! A view row must be a function of the event log alone (docs/projections.md,
//! "Rules for every view"), so every fact describes the log prefix up to the event being
//! applied, exactly as a query `WHERE id <= <that event>` would:
//!
//! - A [`Cache`] is created for one run of events applied in notification-id
//!   order without gaps, inside the store's write lock (SQLite's `BEGIN
//!   IMMEDIATE`, Postgres's `LOCK TABLE ... IN EXCLUSIVE MODE`), and it
//!   [`observes`](Cache::observe) *every* event of the run, whichever views
//!   are on and whether or not they apply it. A fact, once known, is kept up
//!   to date by these observations; a fact that is not known is read from the
//!   log with `id <= <current event>` (see [`edge_events`](crate::projections::facts::edge_events)), which is the
//!   same value.
//! - Facts about the prefix up to event N cannot change afterwards: the log
//!   is append-only and every later event has a higher id (new writers get
//!   ids above the highest, on either backend). So the facts stay true as
//!   long as the run continues in id order. The one run that spans several
//!   transactions is a rebuild (`app::rebuild`), which commits per batch; it
//!   keeps its cache across its own commits because it applies every event
//!   in id order, reads only committed events (every id a writer can still
//!   get is higher), and writes temporary tables of its own connection that
//!   no one else writes, so its rows in memory are exactly those tables'
//!   rows. Its last events are applied, with the same cache, in the
//!   transaction that holds the log's lock and switches the live tables. A
//!   catch-up is one transaction with its own cache.
//! - A writer's commands carry one [`Mode::Live`] cache (facts only, no
//!   rows) from each committed command to its next. Its facts describe the
//!   log up to [`Cache::seen`]; before the next command's events are applied
//!   (under the log's lock, so the log up to them is final), the events that
//!   other writers appended after `seen` are read from the log and observed
//!   (one query; none when nobody else wrote), so the facts are again
//!   exactly what a lookup `WHERE id <= <event>` returns. A log that does
//!   not continue the cache's (ids at or below `seen`), more than
//!   [`CARRY_GAP`](crate::projections::CARRY_GAP) events of others, or a
//!   transaction that does not commit drops it. View rows are never carried:
//!   they stay a function of the event log alone, whatever the number of
//!   writers and processes (docs/projections.md, "Rules for every view"); the cache
//!   only spares the lookups a writer would otherwise repeat for every status update.
//! - View rows: in [`Mode::Live`] (a command's new events) rows are never
//!   cached; each change is one targeted statement (`UPDATE ... SET status`,
//!   or an upsert that keeps the other columns). In [`Mode::Batch`]
//!   (catch-up, rebuild) a touched row is read once (or known to be absent),
//!   changed in memory, and written back by [`Cache::flush`], which the
//!   caller runs before it commits (and after each batch of events, which
//!   also bounds memory). A row in memory is therefore exactly what the same
//!   statements would have left in the table.
//!
//! # Memory
//!
//! Every map has two generations: a use moves an entry into the current
//! one; at a flush (after each batch of events), when the current one holds
//! [`GENERATION`] entries, the entries of the old one are dropped and the
//! current one becomes the old one. What is kept is therefore what the last
//! batches used: memory is bounded by the capacity and the batch size, not
//! by the log. An evicted entry is read from the database again if it is
//! needed again.
//!
//! A rebuild starts from an empty state (notification 0, emptied view
//! tables). Then an aggregate or a row that the cache has never seen is
//! known to have no events / no row, with no query. To keep that knowledge
//! after evictions, evicted keys go into a fixed-size Bloom filter: a key
//! that may have been evicted is read from the database; a false positive
//! only costs that query.

use crate::domain::{Event, Value};
use crate::error::Result;
use crate::projections::facts::{Facts, Need, TaskInfo, WorkflowInfo};
use crate::projections::rows::RowCache;
use crate::projections::view::{self, ViewRow, ViewTable};
use crate::store::{NoRow, Tx};
use std::sync::Arc;
use uuid::Uuid;

/// Entries per generation of each map (at most twice this many are kept).
/// The working set of a realistic log is the tasks and workflows running at
/// the same time (hundreds); more only costs memory.
pub const GENERATION: usize = 512;

/// How view rows are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A command's own events: every row change is one statement at once.
    Live,
    /// Catch-up and rebuild: rows are changed in memory and written by
    /// [`Cache::flush`].
    Batch,
}

/// The facts and rows of one run of events.
pub struct Cache {
    mode: Mode,
    capacity: usize,
    /// The last notification id observed (or the start).
    seen: i64,
    facts: Facts,
    rows: RowCache,
}

impl Cache {
    /// A cache for a run that starts after notification `start` (the run's
    /// first event is the first one after it).
    pub fn new(mode: Mode, start: i64) -> Cache {
        Cache {
            mode,
            capacity: GENERATION,
            seen: start,
            facts: Facts::new(start),
            rows: RowCache::new(false),
        }
    }

    /// A cache for a rebuild: from notification 0, into emptied view tables.
    pub fn for_rebuild() -> Cache {
        Cache::for_rebuild_from(0)
    }

    /// A cache for a rebuild that applies the events after notification
    /// `start` into emptied view tables (facts about earlier events are read
    /// from the log).
    pub fn for_rebuild_from(start: i64) -> Cache {
        let mut c = Cache::new(Mode::Batch, start);
        c.rows = RowCache::new(true);
        c
    }

    /// Sets the entries per generation (tests use tiny ones to exercise
    /// eviction).
    pub fn with_capacity(mut self, capacity: usize) -> Cache {
        self.capacity = capacity.max(1);
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The last notification id this cache describes the log up to.
    pub fn seen(&self) -> i64 {
        self.seen
    }

    /// Records that every event up to `id` has been observed (the ones not
    /// observed change no fact).
    pub fn observed_up_to(&mut self, id: i64) {
        self.seen = self.seen.max(id);
    }

    /// Entries held (facts and rows), for tests and measurements.
    pub fn len(&self) -> usize {
        self.facts.len() + self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Statements run for lookups of facts and rows (for tests and
    /// measurements).
    pub fn lookups(&self) -> u64 {
        self.facts.lookups + self.rows.lookups
    }

    /// Starts recording which aggregates' facts the projectors ask for.
    pub fn record(&mut self) {
        self.facts.record();
    }

    /// The aggregates recorded since [`record`](Cache::record), sorted.
    pub fn take_consulted(&mut self) -> Vec<Uuid> {
        self.facts.take_consulted()
    }

    /// After events were applied at the ids `after + 1, ...` before their
    /// ids were known: gives their facts (about `aggregates`, the events'
    /// own) the real ids, and describes the log up to the last of them.
    pub fn renumber(&mut self, aggregates: &[Uuid], after: i64, real: &[i64]) {
        self.facts.renumber(aggregates, after, real);
        if let Some(last) = real.last() {
            self.seen = *last;
        }
    }

    /// Forgets the facts of aggregates other writers appended to.
    pub fn forget(&mut self, aggregates: &[Uuid]) {
        self.facts.forget(aggregates);
    }

    /// Records what event `at` tells about its aggregate. Called for every
    /// event of the run, in id order, before any view applies it.
    pub fn observe(&mut self, at: i64, e: &Event) {
        self.seen = self.seen.max(at);
        self.facts.observe(at, e);
    }

    /// Writes every changed row (Batch mode), then bounds memory. Call
    /// before the transaction commits.
    pub fn flush(&mut self, tx: &mut dyn Tx) -> Result<()> {
        self.rows.flush(tx)?;
        self.facts.rotate(self.capacity);
        self.rows.rotate(self.capacity);
        log::trace!(
            "projection cache: {} facts, {} rows; {} lookups",
            self.facts.len(),
            self.rows.len(),
            self.lookups()
        );
        Ok(())
    }
}

// ------------------------------------------------------------------ context

/// What a projector works with while it applies one event: the transaction,
/// the cache, and the event's notification id (every lookup sees the log up
/// to and including it).
pub struct Ctx<'a> {
    pub tx: &'a mut dyn Tx,
    pub cache: &'a mut Cache,
    pub id: i64,
}

impl Ctx<'_> {
    /// Reads the facts of `tasks` that `need` asks for and are not known,
    /// in one statement.
    pub fn ensure_tasks(&mut self, tasks: &[Uuid], need: Need) -> Result<()> {
        self.cache.facts.ensure_tasks(self.tx, self.id, tasks, need)
    }

    /// The task's TaskCreated, if stored so far.
    pub fn task(&mut self, task: Uuid) -> Result<Option<Arc<TaskInfo>>> {
        self.cache.facts.task(self.tx, self.id, task)
    }

    /// `f` of the job id of the task's latest JobIdAdded so far.
    pub fn latest_job_id_with<T>(
        &mut self,
        task: Uuid,
        f: impl FnOnce(&Value) -> T,
    ) -> Result<Option<T>> {
        self.cache
            .facts
            .latest_job_id_with(self.tx, self.id, task, f)
    }

    /// The workflow's owner and task list, if it is initiated so far.
    pub fn workflow(&mut self, wf: Uuid) -> Result<Option<Arc<WorkflowInfo>>> {
        self.cache.facts.workflow(self.tx, self.id, wf)
    }

    /// The workflow a task belongs to (see [`Facts::task_workflow`]).
    pub fn task_workflow(&mut self, task: &TaskInfo) -> Result<Option<Arc<WorkflowInfo>>> {
        self.cache.facts.task_workflow(self.tx, self.id, task)
    }

    /// The tasks that belong to `wf`, in TaskAdded order.
    pub fn workflow_tasks(
        &mut self,
        wf: &WorkflowInfo,
        need: Need,
    ) -> Result<Vec<(Arc<TaskInfo>, i64)>> {
        self.cache.facts.workflow_tasks(self.tx, self.id, wf, need)
    }

    /// The latest progress of any task of the workflow so far.
    pub fn latest_task_progress(&mut self, wf: &WorkflowInfo) -> Result<Option<Value>> {
        self.cache.facts.latest_task_progress(self.tx, self.id, wf)
    }

    /// The interpolated workflow progress of a task progress (remembered).
    pub fn interpolate_progress(&mut self, p: &Value) -> Option<String> {
        self.cache.facts.interpolate_progress(p)
    }

    // -------------------------------------------------------------- rows

    /// Writes a whole row of view `V` (an upsert).
    pub fn put<V: ViewTable>(&mut self, row: V::Row) -> Result<()> {
        match self.cache.mode {
            Mode::Live => {
                let (sql, params) = view::upsert::<V>(self.tx.backend(), &row);
                self.tx.queue(V::SPEC.table, sql, params, None)
            }
            Mode::Batch => self.cache.rows.put::<V>(self.tx, row),
        }
    }

    /// Changes a row of view `V`; `no_row` is logged when there is no row
    /// to change (a patch that creates its row never logs it).
    pub fn patch<V: ViewTable>(
        &mut self,
        key: <V::Row as ViewRow>::Key,
        patch: V::Patch,
        no_row: Option<NoRow>,
    ) -> Result<()> {
        match self.cache.mode {
            Mode::Live => {
                let (sql, params) = view::patch_statement::<V>(self.tx.backend(), key, &patch);
                self.tx.queue(V::SPEC.table, sql, params, no_row)
            }
            Mode::Batch => self.cache.rows.patch::<V>(self.tx, key, patch, no_row),
        }
    }

    /// Deletes a row of view `V`, if there is one.
    pub fn delete<V: ViewTable>(&mut self, key: <V::Row as ViewRow>::Key) -> Result<()> {
        match self.cache.mode {
            Mode::Live => {
                let (sql, params) = view::delete_statement::<V>(self.tx.backend(), key);
                self.tx.queue(V::SPEC.table, sql, params, None)
            }
            Mode::Batch => self.cache.rows.delete::<V>(self.tx, key),
        }
    }
}
