//! The application service: load an aggregate, decide its new events, append
//! them and run the projectors in one transaction, and retry on a version
//! conflict.

use crate::app::db::Lease;
use crate::domain::aggregates::create_event;
use crate::domain::{Aggregate, Event, Payload, Upcasters, Value};
use crate::error::{Error, Result};
use crate::projections::cache::{Cache, Mode};
use crate::projections::{self, tracking, View};
use crate::store::{self, Backend, EventStore, Kind, Notification, Sql, StoredEvent, Tx};
use crate::sys::process::ProcessLocal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use uuid::Uuid;

/// How often a command reloads and retries after losing a version race.
pub const MAX_RETRIES: u32 = 10;

/// How many aggregates a tracker keeps in memory between commands.
pub const AGGREGATE_CACHE: usize = 1024;

pub struct Tracker {
    /// The tracker's use of its store (released by [`Tracker::close`] or on
    /// drop; every later call fails).
    lease: Lease,
    backend: Backend,
    views: Vec<View>,
    upcasters: &'static Upcasters,
    /// The caches, this process's own: a forked child starts with empty
    /// ones (never with mutexes a thread of its parent held at the fork).
    local: ProcessLocal<Local>,
}

#[derive(Default)]
struct Local {
    /// Aggregates as of their latest committed event. A command on a cached
    /// aggregate decides without reading its history; if another writer has
    /// appended to it meanwhile, the command's event takes a version that is
    /// already stored, the append fails with a conflict, and the retry
    /// reads the aggregate from the store (the optimistic concurrency of
    /// eventsourcing's aggregate cache).
    aggregates: Mutex<HashMap<Uuid, Aggregate>>,
    /// The projectors' facts as of the last notification this tracker
    /// projected (see [`projections::project`] for how they are checked
    /// against the log before use).
    facts: Mutex<Option<Cache>>,
    /// The highest notification id this tracker has committed: a lower one
    /// from a later append means the log was replaced (a database dropped
    /// and created again), and the caches are dropped.
    high_water: AtomicI64,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The largest value a 32-bit view column (user, group) holds.
fn check_i32(arg: &str, v: i64) -> Result<Value> {
    if i32::try_from(v).is_err() {
        return Err(Error::value(format!(
            "{arg}: {v} is outside the 32-bit integer range the views store"
        )));
    }
    Ok(Value::Int(v))
}

/// Refuses a NUL character in a value that the views copy into a text column
/// on Postgres, whose text types cannot hold it. Checked for every writer,
/// with or without views: a stored event whose view row can never be written
/// would stop every later projection (and so every command with views).
fn check_view_text(backend: Backend, arg: &str, v: &Value) -> Result<()> {
    if backend == Backend::Postgres {
        if let Value::Str(s) = v {
            if s.contains('\0') {
                return Err(Error::value(format!(
                    "{arg}: contains a NUL character (\\x00), which the biomero_* view tables on \
                     Postgres cannot store"
                )));
            }
        }
    }
    Ok(())
}

impl Tracker {
    /// Opens the store of `url` (or `SQLALCHEMY_URL`), creates the view
    /// tables of `views`, and brings those views up to date.
    pub fn open(url: Option<&str>, views: Vec<View>) -> Result<Tracker> {
        let lease = Lease::open(url, "WorkflowTracker")?;
        let store = lease.shared().clone();
        let tracker = Tracker {
            lease,
            backend: store.backend(),
            views,
            upcasters: Upcasters::standard(),
            local: ProcessLocal::new(),
        };
        if store.read_only() {
            // Nothing can be projected: the views are read as they are.
            log::debug!(
                "{}: read-only, views not brought up to date",
                store.masked_url()
            );
        } else if !tracker.views.is_empty() {
            crate::migrations::ensure_view_tables_in(store.as_ref())?;
            tracker.catch_up()?;
        }
        Ok(tracker)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        self.lease.shared()
    }

    /// Releases this tracker's use of its store: when no other object of
    /// this process uses the store, its connections close. Every later call
    /// fails. Closing twice does nothing.
    pub fn close(&self) {
        self.lease.close();
    }

    pub fn is_closed(&self) -> bool {
        self.lease.is_closed()
    }

    /// The store, unless the tracker was closed.
    fn open_store(&self) -> Result<&dyn EventStore> {
        self.lease.store()
    }

    fn local(&self) -> &Local {
        self.local.get_or_init(Local::default)
    }

    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// Applies events written without this tracker's views.
    pub fn catch_up(&self) -> Result<u64> {
        let views = self.views.clone();
        store::write_tx(self.open_store()?, |tx| projections::catch_up(tx, &views))
    }

    /// Runs one command: `decide` reads what it needs in the transaction and
    /// returns the new events; they are appended and projected in the same
    /// transaction. A lost version race reloads and retries.
    ///
    /// The transaction holds the log's lock from the start (SQLite's BEGIN
    /// IMMEDIATE; on Postgres the reference's table lock, taken with BEGIN
    /// in one round trip), so what `decide` reads cannot change before the
    /// append, except through writers that do not lock (retried).
    fn run(
        &self,
        what: &str,
        mut decide: impl FnMut(&mut dyn Tx) -> Result<Vec<Event>>,
    ) -> Result<Vec<Event>> {
        let mut attempt = 0;
        loop {
            let local = self.local();
            let mut facts = locked(&local.facts).take();
            if attempt == 0 {
                if let Some((events, last)) = self.one_trip(what, &mut decide, &mut facts)? {
                    local.high_water.fetch_max(last, Ordering::Relaxed);
                    *locked(&local.facts) = facts;
                    self.remember(&events);
                    return Ok(events);
                }
            }
            let mut replaced = false;
            let mut touched: Vec<Uuid> = Vec::new();
            let result = store::write_locked_tx(self.open_store()?, |tx| {
                let events = decide(tx)?;
                touched = events.iter().map(|e| e.originator_id).collect();
                let stored = self.stored(&events);
                let (ids, positions) =
                    projections::tracking::append_and_positions(tx, &self.views, &stored)?;
                if ids
                    .first()
                    .is_some_and(|id| *id <= local.high_water.load(Ordering::Relaxed))
                {
                    replaced = true;
                    let e = &events[0];
                    return Err(Error::Conflict {
                        id: e.originator_id,
                        version: e.originator_version,
                    });
                }
                let new: Vec<(i64, &Event)> = ids.iter().copied().zip(events.iter()).collect();
                let first = ids.first().copied().unwrap_or(0);
                if positions.std.iter().any(|p| *p < first - 1) && self.store().rebuild_running() {
                    // A rebuild is replaying the log (SQLite, batch by
                    // batch): its final catch-up applies these events. The
                    // command does not do the rebuild's work.
                    facts = None;
                } else {
                    projections::project(tx, &self.views, &new, positions, &mut facts)?;
                }
                Ok((events.clone(), ids.last().copied()))
            });
            match result {
                Ok((events, last)) => {
                    if let Some(last) = last {
                        local.high_water.fetch_max(last, Ordering::Relaxed);
                    }
                    *locked(&local.facts) = facts;
                    self.remember(&events);
                    return Ok(events);
                }
                Err(Error::Conflict { id, version }) => {
                    if replaced {
                        log::info!("{what}: the event log was replaced; dropping cached state");
                        locked(&self.local().aggregates).clear();
                        local.high_water.store(0, Ordering::Relaxed);
                    } else {
                        // Any of the command's aggregates may be the outdated one.
                        let mut cache = locked(&self.local().aggregates);
                        for t in &touched {
                            cache.remove(t);
                        }
                    }
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(Error::Concurrency(format!(
                            "{what}: aggregate {id} version {version} kept being written by other writers; \
                             gave up after {MAX_RETRIES} retries"
                        )));
                    }
                    log::debug!("{what}: version conflict on {id}, retry {attempt}/{MAX_RETRIES}");
                    // The first retry at once (a stale cached aggregate, or a
                    // writer that does not lock); later ones back off.
                    if attempt > 1 {
                        let backoff = Duration::from_millis((5u64 << attempt.min(7)).min(500));
                        let jitter = Duration::from_millis(rand::random::<u64>() % 10);
                        std::thread::sleep(backoff + jitter);
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// The command in one round trip (Postgres), when its aggregates and the
    /// projectors' facts are carried from earlier commands: the events are
    /// decided and applied before anything is sent (the transaction is
    /// offline), then the append, the view rows, the positions and COMMIT go
    /// together, guarded by what the projectors relied on
    /// ([`one_trip_check`](projections::tracking::one_trip_check)). Returns
    /// the committed events and the last id, or `None` when the command
    /// needs the usual way (a read first, or the guard refused: nothing
    /// was written); `facts` is then dropped.
    fn one_trip(
        &self,
        what: &str,
        decide: &mut impl FnMut(&mut dyn Tx) -> Result<Vec<Event>>,
        facts: &mut Option<Cache>,
    ) -> Result<Option<(Vec<Event>, i64)>> {
        if self.backend != Backend::Postgres || self.views.is_empty() {
            return Ok(None);
        }
        let Some(mut cache) = facts.take().filter(|c| c.mode() == Mode::Live) else {
            return Ok(None);
        };
        let seen = cache.seen();
        let mut out = None;
        let result = store::write_locked_tx(self.open_store()?, |tx| {
            if !tx.one_round_trip() {
                return Err(Error::NotInOneTrip);
            }
            tx.set_offline(true);
            let events = decide(tx)?;
            let stored = self.stored(&events);
            cache.record();
            let refs: Vec<&Event> = events.iter().collect();
            projections::project_ahead(tx, &self.views, &refs, &mut cache)?;
            let mut consulted = cache.take_consulted();
            consulted.extend(events.iter().map(|e| e.originator_id));
            consulted.sort_unstable();
            consulted.dedup();
            let (check, params) = tracking::one_trip_check(&self.views, seen, &consulted);
            let (ids, rows) =
                tx.commit_in_one((&check, &params, &[Kind::Int, Kind::Text]), &stored)?;
            let others = rows
                .first()
                .and_then(|r| r.get(1))
                .and_then(Sql::as_str)
                .map(uuid_array)
                .unwrap_or_default();
            out = Some((events, ids, others));
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(Error::NotInOneTrip) => {
                log::debug!("{what}: not in one round trip (a read first, or the log moved)");
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let Some((events, ids, others)) = out else {
            return Ok(None);
        };
        let Some(last) = ids.last().copied() else {
            return Ok(None);
        };
        log::trace!("{what}: one round trip");
        let mine: Vec<Uuid> = events.iter().map(|e| e.originator_id).collect();
        cache.renumber(&mine, seen, &ids);
        // The aggregates other writers appended to since `seen` (the check
        // allowed only a few): forgotten, read again if ever asked for.
        let others: Vec<Uuid> = others.into_iter().filter(|id| !mine.contains(id)).collect();
        cache.forget(&others);
        *facts = Some(cache);
        Ok(Some((events, last)))
    }

    /// The events as stored.
    fn stored(&self, events: &[Event]) -> Vec<StoredEvent> {
        events
            .iter()
            .map(|e| StoredEvent {
                originator_id: e.originator_id,
                originator_version: e.originator_version,
                topic: e.topic().to_owned(),
                state: e.encode_state(self.upcasters),
            })
            .collect()
    }

    /// Folds a command's committed events into the cached aggregates.
    fn remember(&self, events: &[Event]) {
        let mut cache = locked(&self.local().aggregates);
        for e in events {
            let id = e.originator_id;
            if e.originator_version == 0 {
                if cache.len() >= AGGREGATE_CACHE {
                    cache.clear();
                }
                match Aggregate::replay([e.clone()]) {
                    Ok(Some(agg)) => {
                        cache.insert(id, agg);
                    }
                    _ => {
                        cache.remove(&id);
                    }
                }
                continue;
            }
            let applied = match cache.get_mut(&id) {
                Some(agg) if agg.version() + 1 == e.originator_version => agg.apply(e).is_ok(),
                _ => false,
            };
            if !applied {
                cache.remove(&id);
            }
        }
    }

    /// The aggregate's current state: the cached one, else read from the
    /// store (and cached).
    fn current(&self, tx: &mut dyn Tx, id: Uuid) -> Result<Aggregate> {
        if let Some(agg) = locked(&self.local().aggregates).get(&id) {
            return Ok(agg.clone());
        }
        let agg = self.load(tx, id, None)?;
        self.keep(&agg);
        Ok(agg)
    }

    /// Caches an aggregate as stored (committed).
    fn keep(&self, agg: &Aggregate) {
        let mut cache = locked(&self.local().aggregates);
        if cache.len() >= AGGREGATE_CACHE {
            cache.clear();
        }
        cache.insert(agg.id(), agg.clone());
    }

    /// Loads an aggregate in the transaction: each stored event is decoded
    /// from the row as it comes and folded in. From `cached` (a state of
    /// the aggregate as stored earlier) only the events after it are read
    /// and folded in, as eventsourcing's repository fast-forwards its
    /// cached aggregates; when the log no longer holds the cached state's
    /// last event (a log replaced), it is read whole.
    fn load(&self, tx: &mut dyn Tx, id: Uuid, cached: Option<Aggregate>) -> Result<Aggregate> {
        let from = cached.as_ref().map_or(0, Aggregate::version);
        let mut continues = cached.is_none();
        let mut agg = cached;
        let mut failed = None;
        tx.scan_history(id, from, &mut |version, topic, state| {
            if !continues {
                // The first row must be the cached state's own last event.
                continues = version == from;
                return Ok(());
            }
            if let Some(e) = Event::decode(id, version, topic, state, self.upcasters)? {
                if let Err(err) = Aggregate::fold_owned(&mut agg, e) {
                    failed.get_or_insert(err);
                }
            }
            Ok(())
        })?;
        if from > 0 && (!continues || failed.is_some()) {
            return self.load(tx, id, None);
        }
        if let Some(err) = failed {
            return Err(err);
        }
        agg.ok_or(Error::NotFound(id))
    }

    /// Appends one event to an existing aggregate.
    fn update(&self, what: &str, id: Uuid, payload: Payload) -> Result<()> {
        self.run(what, |tx| {
            let agg = self.current(tx, id)?;
            Ok(vec![agg.trigger(payload.clone())?])
        })?;
        Ok(())
    }

    // ------------------------------------------------------------ commands

    pub fn initiate_workflow(
        &self,
        name: String,
        description: Value,
        user: i64,
        group: i64,
    ) -> Result<Uuid> {
        log::debug!(
            "[WFT] Initiating workflow: name={name}, description={}, user={user}, group={group}",
            show(&description)
        );
        let name = Value::Str(name);
        check_view_text(self.backend, "name", &name)?;
        let payload = Payload::WorkflowInitiated {
            name,
            description,
            user: check_i32("user", user)?,
            group: check_i32("group", group)?,
        };
        let event = create_event(payload);
        let id = event.originator_id;
        self.run("initiate_workflow", |_tx| Ok(vec![event.clone()]))?;
        Ok(id)
    }

    /// Saves TaskCreated, then TaskAdded on the workflow, in one transaction.
    pub fn add_task_to_workflow(
        &self,
        workflow_id: Uuid,
        task_name: String,
        task_version: Value,
        input_data: Value,
        params: Value,
    ) -> Result<Uuid> {
        log::debug!(
            "[WFT] Adding task to workflow: workflow_id={workflow_id}, task_name={task_name}, task_version={}",
            show(&task_version)
        );
        let task_name = Value::Str(task_name);
        check_view_text(self.backend, "task_name", &task_name)?;
        check_view_text(self.backend, "task_version", &task_version)?;
        let created = create_event(Payload::TaskCreated {
            workflow_id,
            task_name,
            task_version,
            input_data,
            params,
        });
        let task_id = created.originator_id;
        self.run("add_task_to_workflow", |tx| {
            let workflow = self.current(tx, workflow_id)?;
            if !matches!(workflow, Aggregate::WorkflowRun(_)) {
                return Err(Error::value(format!(
                    "workflow_id: {workflow_id} is a Task, not a WorkflowRun"
                )));
            }
            let added = workflow.trigger(Payload::TaskAdded { task_id })?;
            Ok(vec![created.clone(), added])
        })?;
        Ok(task_id)
    }

    pub fn start_workflow(&self, id: Uuid) -> Result<()> {
        log::debug!("[WFT] Starting workflow: workflow_id={id}");
        self.update("start_workflow", id, Payload::WorkflowStarted)
    }

    pub fn complete_workflow(&self, id: Uuid) -> Result<()> {
        log::debug!("[WFT] Completing workflow: workflow_id={id}");
        self.update("complete_workflow", id, Payload::WorkflowCompleted)
    }

    pub fn fail_workflow(&self, id: Uuid, error_message: Value) -> Result<()> {
        log::debug!(
            "[WFT] Failing workflow: workflow_id={id}, error_message={}",
            show(&error_message)
        );
        self.update(
            "fail_workflow",
            id,
            Payload::WorkflowFailed { error_message },
        )
    }

    pub fn start_task(&self, id: Uuid) -> Result<()> {
        log::debug!("[WFT] Starting task: task_id={id}");
        self.update("start_task", id, Payload::TaskStarted)
    }

    pub fn complete_task(&self, id: Uuid, message: Value) -> Result<()> {
        log::debug!(
            "[WFT] Completing task: task_id={id}, message={}",
            show(&message)
        );
        self.update(
            "complete_task",
            id,
            Payload::TaskCompleted { result: message },
        )
    }

    pub fn fail_task(&self, id: Uuid, error_message: Value) -> Result<()> {
        log::debug!(
            "[WFT] Failing task: task_id={id}, error_message={}",
            show(&error_message)
        );
        check_view_text(self.backend, "error_message", &error_message)?;
        self.update("fail_task", id, Payload::TaskFailed { error_message })
    }

    pub fn add_job_id(&self, id: Uuid, job_id: Value) -> Result<()> {
        log::debug!(
            "[WFT] Adding job_id to task: task_id={id}, slurm_job_id={}",
            show(&job_id)
        );
        self.update("add_job_id", id, Payload::JobIdAdded { job_id })
    }

    /// `result` is the `{"command","env","stdout","stderr"}` dict.
    pub fn add_result(&self, id: Uuid, result: Value) -> Result<()> {
        log::debug!(
            "[WFT] Adding result to task: task_id={id}, result={}",
            crate::domain::codec::encode(&result)
        );
        self.update("add_result", id, Payload::ResultAdded { result })
    }

    pub fn update_task_status(&self, id: Uuid, status: Value) -> Result<()> {
        log::debug!(
            "[WFT] Adding status to task: task_id={id}, status={}",
            show(&status)
        );
        check_view_text(self.backend, "status", &status)?;
        self.update("update_task_status", id, Payload::StatusUpdated { status })
    }

    pub fn update_task_progress(&self, id: Uuid, progress: Value) -> Result<()> {
        log::debug!(
            "[WFT] Adding progress to task: task_id={id}, progress={}",
            show(&progress)
        );
        check_view_text(self.backend, "progress", &progress)?;
        self.update(
            "update_task_progress",
            id,
            Payload::ProgressUpdated { progress },
        )
    }

    // ------------------------------------------------------------- reading

    /// The aggregate's current state.
    /// The aggregate as stored now. One this tracker has seen before is
    /// read from its cached state on: only the events after it.
    pub fn get(&self, id: Uuid) -> Result<Aggregate> {
        let cached = locked(&self.local().aggregates).get(&id).cloned();
        let agg = store::read_tx(self.open_store()?, |tx| self.load(tx, id, cached.clone()))?;
        self.keep(&agg);
        Ok(agg)
    }

    /// Notifications with `id >= start`, at most `limit`, in id order.
    pub fn select(&self, start: i64, limit: usize) -> Result<Vec<Notification>> {
        store::read_tx(self.open_store()?, |tx| {
            tx.notifications(start.saturating_sub(1), None, limit)
        })
    }
}

/// The uuids of a Postgres array's text (`{a,b}`).
fn uuid_array(text: &str) -> Vec<Uuid> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A value as the reference's f-string log lines show it.
fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Null => "None".into(),
        other => crate::domain::codec::encode(other),
    }
}
