//! What the projectors know while they apply a run of events: facts about
//! the log prefix read so far (a task's TaskCreated, its latest job id and
//! progress; a workflow's owner and tasks) and, when applying many events,
//! the view rows they touch.
//!
//! # Correctness
//!
//! A view row must be a function of the event log alone (PROJECTIONS.md,
//! fix 1), so every fact describes the log prefix up to the event being
//! applied, exactly as a query `WHERE id <= <that event>` would:
//!
//! - A [`Cache`] is created for one run of events applied in notification-id
//!   order without gaps, inside the store's write lock (SQLite's `BEGIN
//!   IMMEDIATE`, Postgres's `LOCK TABLE ... IN EXCLUSIVE MODE`), and it
//!   [`observes`](Cache::observe) *every* event of the run, whichever views
//!   are on and whether or not they apply it. A fact, once known, is kept up
//!   to date by these observations; a fact that is not known is read from the
//!   log with `id <= <current event>` (see [`Tx::edge_events`]), which is the
//!   same value.
//! - Facts about the prefix up to event N cannot change afterwards: the log
//!   is append-only and every later event has a higher id (new writers get
//!   ids above the highest, on either backend). So the facts stay true as
//!   long as the run continues in id order. The one run that spans several
//!   transactions is the SQLite rebuild, which commits per batch; it keeps
//!   its cache across its own commits because it applies every event in id
//!   order up to the end it fixed at the start, and events that other writers
//!   append meanwhile lie beyond that end (the final catch-up applies them,
//!   with a cache of its own). Its rows in memory describe the prefix it has
//!   applied; where a writer with views changed a row between two batches
//!   (catching up from the rebuild's committed position), the rebuild
//!   overwrites it, as it did when it re-read every row, and the final
//!   catch-up reapplies every later event. A catch-up and the Postgres
//!   rebuild are one transaction with their own cache.
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
//!   writers and processes (PROJECTIONS.md, fix 1); the cache only spares
//!   the lookups a writer would otherwise repeat for every status update.
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

use crate::domain::{Event, EventType, Payload, Value};
use crate::error::Result;
use crate::projections::queries::{
    self, JobProgressRow, JobViewRow, TaskExecutionRow, WorkflowProgressRow,
};
use crate::projections::{
    decode, job_accounting, job_progress, lookup, workflow_analytics, workflow_progress,
};
use crate::store::{EdgeQuery, NoRow, Notification, Tx};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use uuid::Uuid;

pub use job_progress::JpPatch;
pub use workflow_analytics::WfaPatch;
pub use workflow_progress::WfpPatch;

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

// ------------------------------------------------------------------ facts

/// A task as its first TaskCreated describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub id: Uuid,
    /// The workflow named in TaskCreated (the task belongs to it once that
    /// workflow's TaskAdded names the task).
    pub workflow_id: Uuid,
    pub name: Value,
    pub version: Value,
    /// TaskCreated's timestamp.
    pub created: DateTime<Utc>,
    /// TaskCreated's notification id.
    pub created_at: i64,
}

impl TaskInfo {
    fn from_event(at: i64, e: &Event) -> Option<TaskInfo> {
        match &e.payload {
            Payload::TaskCreated {
                workflow_id,
                task_name,
                task_version,
                ..
            } => Some(TaskInfo {
                id: e.originator_id,
                workflow_id: *workflow_id,
                name: task_name.clone(),
                version: task_version.clone(),
                created: e.timestamp,
                created_at: at,
            }),
            _ => None,
        }
    }
}

/// A workflow as its first WorkflowInitiated and its TaskAdded events
/// describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowInfo {
    pub id: Uuid,
    pub user: Value,
    pub group: Value,
    /// The tasks of its TaskAdded events, in that order, each with the
    /// notification id of its first TaskAdded.
    pub tasks: Vec<(Uuid, i64)>,
    /// Whether a WorkflowInitiated was seen (user and group are None until).
    initiated: bool,
}

impl WorkflowInfo {
    fn empty(id: Uuid) -> WorkflowInfo {
        WorkflowInfo {
            id,
            user: Value::Null,
            group: Value::Null,
            tasks: Vec::new(),
            initiated: false,
        }
    }

    fn observe(&mut self, at: i64, e: &Event) {
        match &e.payload {
            Payload::WorkflowInitiated { user, group, .. } if !self.initiated => {
                self.user = user.clone();
                self.group = group.clone();
                self.initiated = true;
            }
            Payload::TaskAdded { task_id } if self.added_at(*task_id).is_none() => {
                self.tasks.push((*task_id, at));
            }
            _ => {}
        }
    }

    /// The notification id of TaskAdded(this workflow, `task`), if any.
    pub fn added_at(&self, task: Uuid) -> Option<i64> {
        self.tasks
            .iter()
            .find(|(t, _)| *t == task)
            .map(|(_, at)| *at)
    }
}

/// What is known about a task; `None` = not known (read it from the log).
#[derive(Debug, Default, Clone)]
struct TaskFacts {
    /// Its first decodable TaskCreated.
    created: Option<Option<Arc<TaskInfo>>>,
    /// The job id of its latest decodable JobIdAdded.
    job: Option<Option<Value>>,
    /// Its latest decodable ProgressUpdated: notification id and value.
    progress: Option<Option<(i64, Value)>>,
}

impl TaskFacts {
    fn known_empty() -> TaskFacts {
        TaskFacts {
            created: Some(None),
            job: Some(None),
            progress: Some(None),
        }
    }

    fn observe(&mut self, at: i64, e: &Event) {
        match &e.payload {
            Payload::TaskCreated { .. } => {
                if let Some(slot @ None) = &mut self.created {
                    *slot = TaskInfo::from_event(at, e).map(Arc::new);
                }
            }
            Payload::JobIdAdded { job_id } => self.job = Some(Some(job_id.clone())),
            Payload::ProgressUpdated { progress } => {
                self.progress = Some(Some((at, progress.clone())))
            }
            _ => {}
        }
    }
}

/// Which facts of a task to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Need {
    pub created: bool,
    pub job: bool,
    pub progress: bool,
}

// ------------------------------------------------------------ bounded maps

/// A fast hasher for the cache's keys (UUIDs, job ids): they are not
/// chosen by an adversary who could gain anything from collisions, and
/// SipHash showed in profiles.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        key_hash(0, self.0 as u128)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(0x9e3779b97f4a7c15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(i.into());
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u64(i as u32 as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(23) ^ i).wrapping_mul(0x9e3779b97f4a7c15);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A map of two generations (see the module documentation), kept as one
/// map whose entries carry the generation in which they were last used.
struct Gen<K, V> {
    map: FastMap<K, (u32, V)>,
    /// The current generation.
    gen: u32,
    /// Entries used in the current generation.
    current: usize,
}

impl<K: Hash + Eq + Copy, V> Gen<K, V> {
    fn new() -> Self {
        Gen {
            map: FastMap::default(),
            gen: 0,
            current: 0,
        }
    }

    /// The entry, marked as used in the current generation.
    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let (g, v) = self.map.get_mut(k)?;
        if *g != self.gen {
            *g = self.gen;
            self.current += 1;
        }
        Some(v)
    }

    /// Sets the entry (replacing any), marked as used.
    fn insert(&mut self, k: K, v: V) -> &mut V {
        let gen = self.gen;
        match self.map.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().0 != gen {
                    self.current += 1;
                }
                o.insert((gen, v));
                &mut o.into_mut().1
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.current += 1;
                &mut e.insert((gen, v)).1
            }
        }
    }

    fn values_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, (_, v))| (k, v))
    }

    /// When the current generation holds `capacity` entries: drops the
    /// entries not used in it (passing each dropped key to `dropped`) and
    /// starts the next one.
    fn rotate(&mut self, capacity: usize, mut dropped: impl FnMut(&K)) {
        if self.current >= capacity {
            let gen = self.gen;
            self.map.retain(|k, (g, _)| {
                let keep = *g == gen;
                if !keep {
                    dropped(k);
                }
                keep
            });
            self.gen = gen.wrapping_add(1);
            self.current = 0;
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A fixed-size Bloom filter of evicted keys (1 MiB, 3 probes).
struct Bloom {
    bits: Vec<u64>,
}

const BLOOM_BITS: u64 = 1 << 23;

impl Bloom {
    fn new() -> Bloom {
        Bloom {
            bits: vec![0; (BLOOM_BITS / 64) as usize],
        }
    }

    fn probes(h: u64) -> [u64; 3] {
        let h2 = (h >> 32) | 1;
        [h, h.wrapping_add(h2), h.wrapping_add(h2.wrapping_mul(2))].map(|x| x % BLOOM_BITS)
    }

    fn insert(&mut self, h: u64) {
        for p in Self::probes(h) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn may_contain(&self, h: u64) -> bool {
        Self::probes(h)
            .iter()
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// A well-mixed hash of a tagged key (splitmix64 finaliser).
fn key_hash(tag: u64, key: u128) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    mix(mix(key as u64 ^ tag.wrapping_mul(0x9e3779b97f4a7c15)) ^ (key >> 64) as u64)
}

const TAG_AGGREGATE: u64 = 1;
const TAG_JP: u64 = 2;
const TAG_WFP: u64 = 3;
const TAG_WFA: u64 = 4;

/// A view row held in memory: its state (None = no row) and whether the
/// table still has to be told.
struct Slot<R> {
    row: Option<R>,
    dirty: bool,
}

// ------------------------------------------------------------------ cache

pub struct Cache {
    mode: Mode,
    /// The cache observes the log from notification 1: an aggregate it has
    /// never seen (and never evicted) has no events.
    log_fresh: bool,
    /// The view tables were emptied when this cache started and only it has
    /// written them since: a row it has never seen (nor evicted) is absent.
    rows_fresh: bool,
    capacity: usize,
    evicted: Option<Bloom>,
    tasks: Gen<Uuid, TaskFacts>,
    workflows: Gen<Uuid, Option<Arc<WorkflowInfo>>>,
    ja: FastMap<i32, JobViewRow>,
    jp: Gen<i32, Slot<JobProgressRow>>,
    wfp: Gen<Uuid, Slot<WorkflowProgressRow>>,
    wfa: Gen<Uuid, Slot<TaskExecutionRow>>,
    interpolated: FastMap<String, Option<String>>,
    /// The last notification id observed (or the start).
    seen: i64,
    /// Statements run for lookups (for tests and measurements).
    pub lookups: u64,
}

impl Cache {
    /// A cache for a run that starts after notification `start` (the run's
    /// first event is the first one after it).
    pub fn new(mode: Mode, start: i64) -> Cache {
        Cache {
            mode,
            log_fresh: start == 0,
            rows_fresh: false,
            capacity: GENERATION,
            evicted: None,
            tasks: Gen::new(),
            workflows: Gen::new(),
            ja: FastMap::default(),
            jp: Gen::new(),
            wfp: Gen::new(),
            wfa: Gen::new(),
            interpolated: FastMap::default(),
            seen: start,
            lookups: 0,
        }
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

    /// A cache for a rebuild: from notification 0, into emptied view tables.
    pub fn for_rebuild() -> Cache {
        Cache::for_rebuild_from(0)
    }

    /// A cache for a rebuild that applies the events after notification
    /// `start` into emptied view tables (facts about earlier events are read
    /// from the log).
    pub fn for_rebuild_from(start: i64) -> Cache {
        let mut c = Cache::new(Mode::Batch, start);
        c.rows_fresh = true;
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

    /// Entries held (facts and rows), for tests and measurements.
    pub fn len(&self) -> usize {
        self.tasks.len()
            + self.workflows.len()
            + self.ja.len()
            + self.jp.len()
            + self.wfp.len()
            + self.wfa.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn maybe_evicted(&self, tag: u64, key: u128) -> bool {
        self.evicted
            .as_ref()
            .is_some_and(|b| b.may_contain(key_hash(tag, key)))
    }

    /// Whether an aggregate missing from the cache is known to have no
    /// events so far.
    fn aggregate_is_new(&self, id: Uuid) -> bool {
        self.log_fresh && !self.maybe_evicted(TAG_AGGREGATE, id.as_u128())
    }

    /// Records what event `at` tells about its aggregate. Called for every
    /// event of the run, in id order, before any view applies it.
    pub fn observe(&mut self, at: i64, e: &Event) {
        let id = e.originator_id;
        self.seen = self.seen.max(at);
        // An aggregate's version-0 event comes before all its others.
        let new = e.originator_version == 0 || self.aggregate_is_new(id);
        match &e.payload {
            Payload::WorkflowInitiated { .. } | Payload::TaskAdded { .. } => {
                let entry = match self.workflows.get_mut(&id) {
                    Some(entry) => entry,
                    None => self
                        .workflows
                        .insert(id, new.then(|| Arc::new(WorkflowInfo::empty(id)))),
                };
                if let Some(wf) = entry {
                    Arc::make_mut(wf).observe(at, e);
                }
            }
            Payload::TaskCreated { .. }
            | Payload::JobIdAdded { .. }
            | Payload::ProgressUpdated { .. } => {
                let facts = match self.tasks.get_mut(&id) {
                    Some(f) => f,
                    None => self.tasks.insert(
                        id,
                        if new {
                            TaskFacts::known_empty()
                        } else {
                            TaskFacts::default()
                        },
                    ),
                };
                facts.observe(at, e);
            }
            _ => {}
        }
    }

    /// Writes every changed row (Batch mode), then bounds memory. Call
    /// before the transaction commits.
    pub fn flush(&mut self, tx: &mut dyn Tx) -> Result<()> {
        for row in self.ja.values() {
            job_accounting::write(tx, row)?;
        }
        self.ja.clear();
        for (job, slot) in self.jp.values_mut() {
            if std::mem::take(&mut slot.dirty) {
                match &slot.row {
                    Some(row) => job_progress::write(tx, row)?,
                    None => job_progress::delete(tx, *job)?,
                }
            }
        }
        for (wf, slot) in self.wfp.values_mut() {
            if std::mem::take(&mut slot.dirty) {
                match &slot.row {
                    Some(row) => workflow_progress::write(tx, row)?,
                    None => workflow_progress::delete(tx, *wf)?,
                }
            }
        }
        for (task, slot) in self.wfa.values_mut() {
            if std::mem::take(&mut slot.dirty) {
                match &slot.row {
                    Some(row) => workflow_analytics::write(tx, row)?,
                    None => workflow_analytics::delete(tx, *task)?,
                }
            }
        }
        self.rotate();
        log::trace!(
            "projection cache: {} tasks, {} workflows, {} job rows, {} workflow rows, {} task rows; {} lookups",
            self.tasks.len(),
            self.workflows.len(),
            self.jp.len(),
            self.wfp.len(),
            self.wfa.len(),
            self.lookups
        );
        Ok(())
    }

    fn rotate(&mut self) {
        let cap = self.capacity;
        let track = self.log_fresh || self.rows_fresh;
        let mut dropped: Vec<u64> = Vec::new();
        {
            let mut note = |tag: u64, key: u128| {
                if track {
                    dropped.push(key_hash(tag, key));
                }
            };
            self.tasks.rotate(cap, |k| note(TAG_AGGREGATE, k.as_u128()));
            self.workflows
                .rotate(cap, |k| note(TAG_AGGREGATE, k.as_u128()));
            self.jp.rotate(cap, |k| note(TAG_JP, *k as u32 as u128));
            self.wfp.rotate(cap, |k| note(TAG_WFP, k.as_u128()));
            self.wfa.rotate(cap, |k| note(TAG_WFA, k.as_u128()));
        }
        if !dropped.is_empty() {
            let bloom = self.evicted.get_or_insert_with(Bloom::new);
            for h in dropped {
                bloom.insert(h);
            }
        }
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

/// The first (`last == false`) or last decodable event among `events`.
fn decodable_edge(events: &[Notification], last: bool) -> Option<(i64, Event)> {
    let pick = |n: &Notification| decode(n).map(|e| (n.id, e));
    if last {
        events.iter().rev().find_map(pick)
    } else {
        events.iter().find_map(pick)
    }
}

/// Logs `no_row` when a patch found no row (Batch mode, in memory).
fn log_if_unchanged(changed: bool, no_row: Option<NoRow>) {
    if let (false, Some(note)) = (changed, no_row) {
        note.log();
    }
}

impl Ctx<'_> {
    /// Reads the facts of `tasks` that `need` asks for and the cache does
    /// not know, in one statement.
    pub fn ensure_tasks(&mut self, tasks: &[Uuid], need: Need) -> Result<()> {
        let mut queries: Vec<(EdgeQuery<'static>, Uuid, EventType)> = Vec::new();
        for t in tasks {
            let new = self.cache.aggregate_is_new(*t);
            let facts = match self.cache.tasks.get_mut(t) {
                Some(f) => f,
                None => self.cache.tasks.insert(
                    *t,
                    if new {
                        TaskFacts::known_empty()
                    } else {
                        TaskFacts::default()
                    },
                ),
            };
            let mut ask = |ty: EventType, last: bool| {
                queries.push((
                    EdgeQuery {
                        originator_id: *t,
                        topic: ty.topic(),
                        last,
                    },
                    *t,
                    ty,
                ))
            };
            if need.created && facts.created.is_none() {
                ask(EventType::TaskCreated, false);
            }
            if need.job && facts.job.is_none() {
                ask(EventType::JobIdAdded, true);
            }
            if need.progress && facts.progress.is_none() {
                ask(EventType::ProgressUpdated, true);
            }
        }
        if queries.is_empty() {
            return Ok(());
        }
        let edge: Vec<EdgeQuery<'static>> = queries.iter().map(|(q, _, _)| *q).collect();
        self.cache.lookups += 1;
        let found = self.tx.edge_events(&edge, self.id)?;
        for ((q, task, ty), n) in queries.into_iter().zip(found) {
            let event = match n {
                None => None,
                Some(n) => match decode(&n) {
                    Some(e) => Some((n.id, e)),
                    // Not decodable: the first/last decodable one, the slow way.
                    None => {
                        self.cache.lookups += 1;
                        let all = self.tx.events_of(task, &[ty.topic()], self.id)?;
                        decodable_edge(&all, q.last)
                    }
                },
            };
            let facts = self
                .cache
                .tasks
                .get_mut(&task)
                .expect("inserted above and not rotated since");
            match ty {
                EventType::TaskCreated => {
                    facts.created =
                        Some(event.and_then(|(at, e)| TaskInfo::from_event(at, &e).map(Arc::new)))
                }
                EventType::JobIdAdded => {
                    facts.job = Some(event.and_then(|(_, e)| match e.payload {
                        Payload::JobIdAdded { job_id } => Some(job_id),
                        _ => None,
                    }))
                }
                _ => {
                    facts.progress = Some(event.and_then(|(at, e)| match e.payload {
                        Payload::ProgressUpdated { progress } => Some((at, progress)),
                        _ => None,
                    }))
                }
            }
        }
        Ok(())
    }

    fn task_facts(&mut self, task: Uuid, need: Need) -> Result<&TaskFacts> {
        self.ensure_tasks(&[task], need)?;
        Ok(self.cache.tasks.get_mut(&task).expect("ensured"))
    }

    /// The task's TaskCreated, if stored so far.
    pub fn task(&mut self, task: Uuid) -> Result<Option<Arc<TaskInfo>>> {
        let need = Need {
            created: true,
            ..Need::default()
        };
        Ok(self.task_facts(task, need)?.created.clone().flatten())
    }

    /// The job id of the task's latest JobIdAdded so far.
    pub fn latest_job_id(&mut self, task: Uuid) -> Result<Option<Value>> {
        self.latest_job_id_with(task, Value::clone)
    }

    /// `f` of the job id of the task's latest JobIdAdded so far.
    pub fn latest_job_id_with<T>(
        &mut self,
        task: Uuid,
        f: impl FnOnce(&Value) -> T,
    ) -> Result<Option<T>> {
        let need = Need {
            job: true,
            ..Need::default()
        };
        Ok(match &self.task_facts(task, need)?.job {
            Some(Some(job)) => Some(f(job)),
            _ => None,
        })
    }

    /// The workflow's owner and task list, if it is initiated so far.
    pub fn workflow(&mut self, wf: Uuid) -> Result<Option<Arc<WorkflowInfo>>> {
        let known = match self.cache.workflows.get_mut(&wf) {
            Some(Some(info)) => Some(info.clone()),
            _ => None,
        };
        let info = match known {
            Some(info) => info,
            None if self.cache.aggregate_is_new(wf) => {
                let info = Arc::new(WorkflowInfo::empty(wf));
                self.cache.workflows.insert(wf, Some(info.clone()));
                info
            }
            None => {
                self.cache.lookups += 1;
                let events = self.tx.events_of(
                    wf,
                    &[
                        EventType::WorkflowInitiated.topic(),
                        EventType::TaskAdded.topic(),
                    ],
                    self.id,
                )?;
                let mut info = WorkflowInfo::empty(wf);
                for n in &events {
                    if let Some(e) = decode(n) {
                        info.observe(n.id, &e);
                    }
                }
                let info = Arc::new(info);
                self.cache.workflows.insert(wf, Some(info.clone()));
                info
            }
        };
        Ok(info.initiated.then_some(info))
    }

    /// The workflow a task belongs to: the one its TaskCreated names, once
    /// that workflow is initiated and its TaskAdded names the task. `None`
    /// while either is missing.
    pub fn task_workflow(&mut self, task: &TaskInfo) -> Result<Option<Arc<WorkflowInfo>>> {
        let Some(wf) = self.workflow(task.workflow_id)? else {
            return Ok(None);
        };
        Ok(wf.added_at(task.id).is_some().then_some(wf))
    }

    /// The tasks that belong to `wf`, in TaskAdded order, each with the
    /// notification id of its TaskAdded.
    pub fn workflow_tasks(
        &mut self,
        wf: &WorkflowInfo,
        need: Need,
    ) -> Result<Vec<(Arc<TaskInfo>, i64)>> {
        let ids: Vec<Uuid> = wf.tasks.iter().map(|(t, _)| *t).collect();
        self.ensure_tasks(
            &ids,
            Need {
                created: true,
                ..need
            },
        )?;
        let mut out = Vec::with_capacity(wf.tasks.len());
        for (task, added_at) in &wf.tasks {
            let facts = self.cache.tasks.get_mut(task).expect("ensured");
            if let Some(Some(info)) = &facts.created {
                if info.workflow_id == wf.id {
                    out.push((info.clone(), *added_at));
                }
            }
        }
        Ok(out)
    }

    /// The latest progress of any task of the workflow: the value of the
    /// latest ProgressUpdated so far among its tasks, counting only updates
    /// after the task joined the workflow. `None` when there is none (the
    /// reference's "task_progress" is then unset).
    pub fn latest_task_progress(&mut self, wf: &WorkflowInfo) -> Result<Option<Value>> {
        let need = Need {
            created: true,
            job: false,
            progress: true,
        };
        let tasks = &mut self.cache.tasks;
        let known = wf.tasks.iter().all(|(t, _)| {
            tasks
                .get_mut(t)
                .is_some_and(|f| f.created.is_some() && f.progress.is_some())
        });
        if !known {
            let ids: Vec<Uuid> = wf.tasks.iter().map(|(t, _)| *t).collect();
            self.ensure_tasks(&ids, need)?;
        }
        let mut best: Option<(i64, Value)> = None;
        for (task, added_at) in &wf.tasks {
            let facts = self.cache.tasks.get_mut(task).expect("ensured");
            let Some(Some(info)) = &facts.created else {
                continue;
            };
            if info.workflow_id != wf.id {
                continue;
            }
            if let Some(Some((at, p))) = &facts.progress {
                if *at > *added_at && best.as_ref().is_none_or(|(b, _)| at > b) {
                    best = Some((*at, p.clone()));
                }
            }
        }
        Ok(best.map(|(_, v)| v))
    }

    /// [`lookup::interpolate_progress`], remembered for the few progress
    /// texts a log holds.
    pub fn interpolate_progress(&mut self, p: &Value) -> Option<String> {
        let Value::Str(text) = p else {
            return lookup::interpolate_progress(p);
        };
        if let Some(r) = self.cache.interpolated.get(text.as_str()) {
            return r.clone();
        }
        let r = lookup::interpolate_progress(p);
        if self.cache.interpolated.len() >= 1024 {
            self.cache.interpolated.clear();
        }
        self.cache.interpolated.insert(text.clone(), r.clone());
        r
    }

    // -------------------------------------------------------------- rows

    /// biomero_job_view: upserts a row.
    pub fn put_job(&mut self, row: JobViewRow) -> Result<()> {
        match self.cache.mode {
            Mode::Live => job_accounting::queue_write(self.tx, &row),
            Mode::Batch => {
                self.cache.ja.insert(row.slurm_job_id as i32, row);
                Ok(())
            }
        }
    }

    /// biomero_job_progress_view: changes job `job`'s row (creating it).
    pub fn patch_job_progress(&mut self, job: i32, patch: JpPatch) -> Result<()> {
        match self.cache.mode {
            Mode::Live => patch.execute(self.tx, job),
            Mode::Batch => {
                let slot = self.jp_slot(job)?;
                patch.apply(job, &mut slot.row);
                slot.dirty = true;
                Ok(())
            }
        }
    }

    fn jp_slot(&mut self, job: i32) -> Result<&mut Slot<JobProgressRow>> {
        if self.cache.jp.get_mut(&job).is_none() {
            let row =
                if self.cache.rows_fresh && !self.cache.maybe_evicted(TAG_JP, job as u32 as u128) {
                    None
                } else {
                    self.cache.lookups += 1;
                    queries::get_job_progress(self.tx, job.into())?
                };
            self.cache.jp.insert(job, Slot { row, dirty: false });
        }
        Ok(self.cache.jp.get_mut(&job).expect("inserted"))
    }

    /// biomero_workflow_progress_view: writes a whole row.
    pub fn put_workflow(&mut self, row: WorkflowProgressRow) -> Result<()> {
        match self.cache.mode {
            Mode::Live => workflow_progress::queue_write(self.tx, &row),
            Mode::Batch => {
                let wf = row.workflow_id;
                let slot = self.wfp_slot(wf, false)?;
                slot.row = Some(row);
                slot.dirty = true;
                Ok(())
            }
        }
    }

    /// biomero_workflow_progress_view: changes an existing row; `no_row`
    /// is logged when the workflow has no row.
    pub fn patch_workflow(
        &mut self,
        wf: Uuid,
        patch: WfpPatch,
        no_row: Option<NoRow>,
    ) -> Result<()> {
        match self.cache.mode {
            Mode::Live => patch.execute(self.tx, wf, no_row),
            Mode::Batch => {
                let slot = self.wfp_slot(wf, true)?;
                let changed = patch.apply(&mut slot.row);
                slot.dirty |= changed;
                log_if_unchanged(changed, no_row);
                Ok(())
            }
        }
    }

    fn wfp_slot(&mut self, wf: Uuid, read: bool) -> Result<&mut Slot<WorkflowProgressRow>> {
        if self.cache.wfp.get_mut(&wf).is_none() {
            let row = if !read
                || (self.cache.rows_fresh && !self.cache.maybe_evicted(TAG_WFP, wf.as_u128()))
            {
                None
            } else {
                self.cache.lookups += 1;
                queries::get_workflow_utc(self.tx, wf)?
            };
            self.cache.wfp.insert(wf, Slot { row, dirty: false });
        }
        Ok(self.cache.wfp.get_mut(&wf).expect("inserted"))
    }

    /// biomero_task_execution: writes a whole row.
    pub fn put_task(&mut self, row: TaskExecutionRow) -> Result<()> {
        match self.cache.mode {
            Mode::Live => workflow_analytics::queue_write(self.tx, &row),
            Mode::Batch => {
                let task = row.task_id;
                let slot = self.wfa_slot(task, false)?;
                slot.row = Some(row);
                slot.dirty = true;
                Ok(())
            }
        }
    }

    /// biomero_task_execution: changes (or deletes) an existing row;
    /// `no_row` is logged when the task has no row.
    pub fn patch_task(&mut self, task: Uuid, patch: WfaPatch, no_row: Option<NoRow>) -> Result<()> {
        match self.cache.mode {
            Mode::Live => patch.execute(self.tx, task, no_row),
            Mode::Batch => {
                let slot = self.wfa_slot(task, true)?;
                let changed = patch.apply(&mut slot.row);
                slot.dirty |= changed;
                log_if_unchanged(changed, no_row);
                Ok(())
            }
        }
    }

    fn wfa_slot(&mut self, task: Uuid, read: bool) -> Result<&mut Slot<TaskExecutionRow>> {
        if self.cache.wfa.get_mut(&task).is_none() {
            let row = if !read
                || (self.cache.rows_fresh && !self.cache.maybe_evicted(TAG_WFA, task.as_u128()))
            {
                None
            } else {
                self.cache.lookups += 1;
                queries::get_task_execution_utc(self.tx, task)?
            };
            self.cache.wfa.insert(task, Slot { row, dirty: false });
        }
        Ok(self.cache.wfa.get_mut(&task).expect("inserted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_keep_what_is_used_and_bound_the_rest() {
        let mut g: Gen<u32, u32> = Gen::new();
        let mut dropped = Vec::new();
        for i in 0..10 {
            g.insert(i, i);
        }
        g.rotate(10, |k| dropped.push(*k));
        assert!(dropped.is_empty());
        assert_eq!(g.get_mut(&3).copied(), Some(3)); // used again
        *g.insert(4, 40) += 1; // replaced
        for i in 10..18 {
            g.insert(i, i);
        }
        g.rotate(10, |k| dropped.push(*k));
        dropped.sort();
        assert_eq!(dropped, vec![0, 1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(g.get_mut(&3).copied(), Some(3));
        assert_eq!(g.get_mut(&4).copied(), Some(41));
        assert_eq!(g.get_mut(&0), None);
        assert_eq!(g.len(), 10);
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut b = Bloom::new();
        let keys: Vec<u64> = (0..10_000u128).map(|k| key_hash(TAG_WFA, k)).collect();
        for h in &keys {
            b.insert(*h);
        }
        assert!(keys.iter().all(|h| b.may_contain(*h)));
        let false_positives = (10_000..110_000u128)
            .filter(|k| b.may_contain(key_hash(TAG_WFA, *k)))
            .count();
        assert!(false_positives < 100, "{false_positives}");
    }
}
