//! The application service: load an aggregate, decide its new events, append
//! them and run the projectors in one transaction, and retry on a version
//! conflict.

use crate::domain::aggregates::create_event;
use crate::domain::{Aggregate, Event, Payload, Upcasters, Value};
use crate::error::{Error, Result};
use crate::projections::{self, View};
use crate::store::{self, Backend, EventStore, Notification, StoredEvent, Tx};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How often a command reloads and retries after losing a version race.
pub const MAX_RETRIES: u32 = 10;

pub struct Tracker {
    store: Arc<dyn EventStore>,
    views: Vec<View>,
    upcasters: &'static Upcasters,
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
        let url = store::resolve_url(url)?;
        let store = store::open(&url)?;
        let tracker = Tracker {
            store,
            views,
            upcasters: Upcasters::standard(),
        };
        if !tracker.views.is_empty() {
            crate::migrations::ensure_view_tables_in(tracker.store.as_ref())?;
            tracker.catch_up()?;
        }
        Ok(tracker)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// Applies events written without this tracker's views.
    pub fn catch_up(&self) -> Result<u64> {
        let views = self.views.clone();
        store::write_tx(self.store.as_ref(), |tx| projections::catch_up(tx, &views))
    }

    /// Runs one command: `decide` reads what it needs in the transaction and
    /// returns the new events; they are appended and projected in the same
    /// transaction. A lost version race reloads and retries.
    fn run(
        &self,
        what: &str,
        mut decide: impl FnMut(&mut dyn Tx) -> Result<Vec<Event>>,
    ) -> Result<Vec<Event>> {
        let mut attempt = 0;
        loop {
            // The first attempt reads the aggregate before queueing for the
            // log's lock, so that uncontended writers load in parallel. After
            // a lost race, the retry queues behind every other writer before
            // it reads (SQLite's BEGIN IMMEDIATE always does): under the lock
            // the load sees every commit before it, so the retry cannot lose
            // to a writer that takes the lock too. Without this, each retry
            // on a busy Postgres aggregate lost again to a writer queued ahead
            // and ran out of retries (ConcurrencyError).
            let lock_first = attempt > 0;
            let result = store::write_tx(self.store.as_ref(), |tx| {
                if lock_first {
                    tx.lock_log()?;
                }
                let events = decide(tx)?;
                let stored: Vec<StoredEvent> = events
                    .iter()
                    .map(|e| StoredEvent {
                        originator_id: e.originator_id,
                        originator_version: e.originator_version,
                        topic: e.topic().to_owned(),
                        state: e.encode_state(self.upcasters),
                    })
                    .collect();
                let ids = tx.append(&stored)?;
                let new: Vec<(i64, &Event)> = ids.into_iter().zip(events.iter()).collect();
                projections::project(tx, &self.views, &new)?;
                Ok(events.clone())
            });
            match result {
                Err(Error::Conflict { id, version }) => {
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(Error::Concurrency(format!(
                            "{what}: aggregate {id} version {version} kept being written by other writers; \
                             gave up after {MAX_RETRIES} retries"
                        )));
                    }
                    log::debug!("{what}: version conflict on {id}, retry {attempt}/{MAX_RETRIES}");
                    // The first retry queues on the lock at once; later ones
                    // (conflicts with writers that do not lock) back off.
                    if attempt > 1 {
                        let backoff = Duration::from_millis((5u64 << attempt.min(7)).min(500));
                        let jitter = Duration::from_millis(rand::random::<u64>() % 10);
                        std::thread::sleep(backoff + jitter);
                    }
                }
                other => return other,
            }
        }
    }

    /// Loads an aggregate in the transaction.
    fn load(&self, tx: &mut dyn Tx, id: Uuid) -> Result<Aggregate> {
        let stored = tx.load_events(id)?;
        let events = stored
            .into_iter()
            .filter_map(|n| {
                let e = n.event;
                Event::decode(
                    e.originator_id,
                    e.originator_version,
                    &e.topic,
                    &e.state,
                    self.upcasters,
                )
                .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Aggregate::replay(events)?.ok_or(Error::NotFound(id))
    }

    /// Appends one event to an existing aggregate.
    fn update(&self, what: &str, id: Uuid, payload: Payload) -> Result<()> {
        self.run(what, |tx| {
            let agg = self.load(tx, id)?;
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
        check_view_text(self.store.backend(), "name", &name)?;
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
        check_view_text(self.store.backend(), "task_name", &task_name)?;
        check_view_text(self.store.backend(), "task_version", &task_version)?;
        let created = create_event(Payload::TaskCreated {
            workflow_id,
            task_name,
            task_version,
            input_data,
            params,
        });
        let task_id = created.originator_id;
        self.run("add_task_to_workflow", |tx| {
            let workflow = self.load(tx, workflow_id)?;
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
        check_view_text(self.store.backend(), "error_message", &error_message)?;
        self.update("fail_task", id, Payload::TaskFailed { error_message })
    }

    pub fn add_job_id(&self, id: Uuid, job_id: String) -> Result<()> {
        log::debug!("[WFT] Adding job_id to task: task_id={id}, slurm_job_id={job_id}");
        self.update(
            "add_job_id",
            id,
            Payload::JobIdAdded {
                job_id: Value::Str(job_id),
            },
        )
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
        check_view_text(self.store.backend(), "status", &status)?;
        self.update("update_task_status", id, Payload::StatusUpdated { status })
    }

    pub fn update_task_progress(&self, id: Uuid, progress: Value) -> Result<()> {
        log::debug!(
            "[WFT] Adding progress to task: task_id={id}, progress={}",
            show(&progress)
        );
        check_view_text(self.store.backend(), "progress", &progress)?;
        self.update(
            "update_task_progress",
            id,
            Payload::ProgressUpdated { progress },
        )
    }

    // ------------------------------------------------------------- reading

    /// The aggregate's current state.
    pub fn get(&self, id: Uuid) -> Result<Aggregate> {
        store::read_tx(self.store.as_ref(), |tx| self.load(tx, id))
    }

    /// Notifications with `id >= start`, at most `limit`, in id order.
    pub fn select(&self, start: i64, limit: usize) -> Result<Vec<Notification>> {
        store::read_tx(self.store.as_ref(), |tx| {
            tx.notifications(start.saturating_sub(1), None, limit)
        })
    }
}

/// A value as the reference's f-string log lines show it.
fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Null => "None".into(),
        other => crate::domain::codec::encode(other),
    }
}
