//! The facts projectors look up while they apply a run of events: a
//! task's TaskCreated, its latest job id and progress; a workflow's owner
//! and tasks. Each fact describes the log up to the event being applied,
//! exactly as a query `WHERE id <= <that event>` would (see `cache.rs` for
//! why a remembered fact stays true). Known facts are kept up to date by
//! observing every event of the run; unknown ones are read from the events
//! table with the queries below, written once for both backends.

use crate::domain::{Event, EventType, Payload, Value};
use crate::error::Result;
use crate::projections::bounded::{key_hash, Bloom, FastMap, Gen};
use crate::projections::convert;
use crate::projections::decode::decode;
use crate::store::schema::EVENTS_TABLE;
use crate::store::{Notification, Sql, Tx};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

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
    pub fn from_event(at: i64, e: &Event) -> Option<TaskInfo> {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub created: bool,
    pub job: bool,
    pub progress: bool,
}

impl Need {
    /// What either asks for.
    pub fn or(self, other: Need) -> Need {
        Need {
            created: self.created || other.created,
            job: self.job || other.job,
            progress: self.progress || other.progress,
        }
    }

    pub fn any(self) -> bool {
        self.created || self.job || self.progress
    }
}

/// The tag of aggregate ids in the Bloom filter of evicted keys.
const TAG_AGGREGATE: u64 = 1;

/// The facts known so far about the log up to the last observed event,
/// bounded in memory (see `bounded.rs`).
pub struct Facts {
    /// The run observes the log from notification 1: an aggregate never
    /// seen (and never evicted) has no events.
    log_fresh: bool,
    evicted: Option<Bloom>,
    tasks: Gen<Uuid, TaskFacts>,
    workflows: Gen<Uuid, Option<Arc<WorkflowInfo>>>,
    interpolated: FastMap<String, Option<String>>,
    /// Statements run for lookups (for tests and measurements).
    pub lookups: u64,
    /// While recording: the aggregates whose facts were asked for.
    consulted: Option<Vec<Uuid>>,
}

impl Facts {
    /// Facts of a run that starts after notification `start`.
    pub fn new(start: i64) -> Facts {
        Facts {
            log_fresh: start == 0,
            evicted: None,
            tasks: Gen::new(),
            workflows: Gen::new(),
            interpolated: FastMap::default(),
            lookups: 0,
            consulted: None,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.tasks.len() + self.workflows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an aggregate missing from the facts is known to have no
    /// events so far.
    fn aggregate_is_new(&self, id: Uuid) -> bool {
        self.log_fresh
            && !self
                .evicted
                .as_ref()
                .is_some_and(|b| b.may_contain(key_hash(TAG_AGGREGATE, id.as_u128())))
    }

    /// Records what event `at` tells about its aggregate. Called for every
    /// event of the run, in id order, before any view applies it.
    pub fn observe(&mut self, at: i64, e: &Event) {
        let id = e.originator_id;
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

    /// Starts recording the aggregates whose facts are asked for.
    pub fn record(&mut self) {
        self.consulted = Some(Vec::new());
    }

    /// The aggregates recorded since [`record`](Facts::record) (which ends).
    pub fn take_consulted(&mut self) -> Vec<Uuid> {
        let mut ids = self.consulted.take().unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn consult(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        if let Some(c) = &mut self.consulted {
            c.extend(ids);
        }
    }

    /// Gives the facts of `aggregates` that were observed at the notification
    /// ids `after + 1, after + 2, ...` (events applied before their ids were
    /// known) their real ids, `real[0], real[1], ...`.
    pub fn renumber(&mut self, aggregates: &[Uuid], after: i64, real: &[i64]) {
        let map = |at: &mut i64| {
            let k = *at - after - 1;
            if let Some(r) = usize::try_from(k).ok().and_then(|k| real.get(k)) {
                *at = *r;
            }
        };
        for id in aggregates {
            if let Some(f) = self.tasks.get_mut(id) {
                if let Some(Some(info)) = &mut f.created {
                    map(&mut Arc::make_mut(info).created_at);
                }
                if let Some(Some((at, _))) = &mut f.progress {
                    map(at);
                }
            }
            if let Some(Some(wf)) = self.workflows.get_mut(id) {
                for (_, at) in &mut Arc::make_mut(wf).tasks {
                    map(at);
                }
            }
        }
    }

    /// Forgets what is known of `aggregates` (other writers appended to
    /// them): it is read from the log again when asked for.
    pub fn forget(&mut self, aggregates: &[Uuid]) {
        if aggregates.is_empty() {
            return;
        }
        // A forgotten aggregate is not one without events.
        self.log_fresh = false;
        for id in aggregates {
            self.tasks.remove(id);
            self.workflows.remove(id);
        }
    }

    /// Bounds memory: when a generation is full, drops what the last one
    /// did not use (remembering the dropped keys when the run relies on
    /// "never seen means absent").
    pub fn rotate(&mut self, capacity: usize) {
        let track = self.log_fresh;
        let mut dropped: Vec<u64> = Vec::new();
        {
            let mut note = |key: u128| {
                if track {
                    dropped.push(key_hash(TAG_AGGREGATE, key));
                }
            };
            self.tasks.rotate(capacity, |k| note(k.as_u128()));
            self.workflows.rotate(capacity, |k| note(k.as_u128()));
        }
        if !dropped.is_empty() {
            let bloom = self.evicted.get_or_insert_with(Bloom::new);
            for h in dropped {
                bloom.insert(h);
            }
        }
    }
}

// ------------------------------------------------------------ the queries

/// One event that [`edge_events`] asks for: the first (lowest
/// originator_version) or the last event of an aggregate with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeQuery<'a> {
    pub originator_id: Uuid,
    pub topic: &'a str,
    pub last: bool,
}

/// How many [`EdgeQuery`]s one statement answers (longer lists are split).
pub const EDGE_QUERIES_PER_STATEMENT: usize = 32;

/// The statement of [`edge_events`] for `queries` (at most
/// [`EDGE_QUERIES_PER_STATEMENT`]): one `ORDER BY originator_version LIMIT 1`
/// subquery per query, each a short range scan of the unique index on
/// (originator_id, originator_version), glued with UNION ALL. Parameters:
/// `$1` = upto, then originator and topic of each query.
pub fn edge_events_sql(queries: &[EdgeQuery<'_>]) -> String {
    let mut sql = String::with_capacity(260 * queries.len());
    for (i, q) in queries.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str(&format!(
            "SELECT id, originator_id, originator_version, topic, state FROM \
             (SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
             WHERE originator_id = ${o} AND topic = ${p} AND id <= $1 \
             ORDER BY originator_version {dir} LIMIT 1) AS e{i}",
            o = 2 + 2 * i,
            p = 3 + 2 * i,
            dir = if q.last { "DESC" } else { "ASC" },
        ));
    }
    sql
}

/// For each query, the first or last event (by originator_version) of its
/// aggregate with its topic and a notification id `<= upto`; `None` where
/// there is none. One statement per [`EDGE_QUERIES_PER_STATEMENT`] queries,
/// each an index range scan of one aggregate (no event is transferred but
/// the answers). An answer is matched to its query by aggregate and topic.
pub fn edge_events(
    tx: &mut dyn Tx,
    queries: &[EdgeQuery<'_>],
    upto: i64,
) -> Result<Vec<Option<Notification>>> {
    let mut out: Vec<Option<Notification>> = vec![None; queries.len()];
    for (c, chunk) in queries.chunks(EDGE_QUERIES_PER_STATEMENT).enumerate() {
        let mut params = Vec::with_capacity(1 + 2 * chunk.len());
        params.push(Sql::Int(upto));
        for q in chunk {
            params.push(Sql::Originator(q.originator_id));
            params.push(Sql::Text(q.topic.to_owned()));
        }
        for n in tx.query_notifications(&edge_events_sql(chunk), &params)? {
            for (i, q) in chunk.iter().enumerate() {
                if q.originator_id == n.event.originator_id && q.topic == n.event.topic {
                    out[c * EDGE_QUERIES_PER_STATEMENT + i] = Some(n.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The aggregate's events with one of `topics` and a notification id
/// `<= upto`, in version order.
pub fn events_of(
    tx: &mut dyn Tx,
    originator_id: Uuid,
    topics: &[&str],
    upto: i64,
) -> Result<Vec<Notification>> {
    let list: Vec<String> = (0..topics.len()).map(|i| format!("${}", 3 + i)).collect();
    let sql = format!(
        "SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} \
         WHERE originator_id = $1 AND id <= $2 AND topic IN ({}) ORDER BY originator_version",
        list.join(", ")
    );
    let mut params = vec![Sql::Originator(originator_id), Sql::Int(upto)];
    params.extend(topics.iter().map(|t| Sql::Text((*t).to_owned())));
    tx.query_notifications(&sql, &params)
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

// ------------------------------------------------------------ lookups

impl Facts {
    /// Reads the facts of `tasks` that `need` asks for and the cache does
    /// not know, in one statement.
    pub fn ensure_tasks(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        tasks: &[Uuid],
        need: Need,
    ) -> Result<()> {
        self.consult(tasks.iter().copied());
        let mut queries: Vec<(EdgeQuery<'static>, Uuid, EventType)> = Vec::new();
        for t in tasks {
            let new = self.aggregate_is_new(*t);
            let facts = match self.tasks.get_mut(t) {
                Some(f) => f,
                None => self.tasks.insert(
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
        self.lookups += 1;
        let found = edge_events(tx, &edge, upto)?;
        for ((q, task, ty), n) in queries.into_iter().zip(found) {
            let event = match n {
                None => None,
                Some(n) => match decode(&n) {
                    Some(e) => Some((n.id, e)),
                    // Not decodable: the first/last decodable one, the slow way.
                    None => {
                        self.lookups += 1;
                        let all = events_of(tx, task, &[ty.topic()], upto)?;
                        decodable_edge(&all, q.last)
                    }
                },
            };
            let facts = self
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

    fn task_facts(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        task: Uuid,
        need: Need,
    ) -> Result<&TaskFacts> {
        self.ensure_tasks(tx, upto, &[task], need)?;
        Ok(self.tasks.get_mut(&task).expect("ensured"))
    }

    /// The task's TaskCreated, if stored so far.
    pub fn task(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        task: Uuid,
    ) -> Result<Option<Arc<TaskInfo>>> {
        let need = Need {
            created: true,
            ..Need::default()
        };
        Ok(self
            .task_facts(tx, upto, task, need)?
            .created
            .clone()
            .flatten())
    }

    /// The job id of the task's latest JobIdAdded so far.
    pub fn latest_job_id(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        task: Uuid,
    ) -> Result<Option<Value>> {
        self.latest_job_id_with(tx, upto, task, Value::clone)
    }

    /// `f` of the job id of the task's latest JobIdAdded so far.
    pub fn latest_job_id_with<T>(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        task: Uuid,
        f: impl FnOnce(&Value) -> T,
    ) -> Result<Option<T>> {
        let need = Need {
            job: true,
            ..Need::default()
        };
        Ok(match &self.task_facts(tx, upto, task, need)?.job {
            Some(Some(job)) => Some(f(job)),
            _ => None,
        })
    }

    /// The workflow's owner and task list, if it is initiated so far.
    pub fn workflow(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        wf: Uuid,
    ) -> Result<Option<Arc<WorkflowInfo>>> {
        self.consult([wf]);
        let known = match self.workflows.get_mut(&wf) {
            Some(Some(info)) => Some(info.clone()),
            _ => None,
        };
        let info = match known {
            Some(info) => info,
            None if self.aggregate_is_new(wf) => {
                let info = Arc::new(WorkflowInfo::empty(wf));
                self.workflows.insert(wf, Some(info.clone()));
                info
            }
            None => {
                self.lookups += 1;
                let events = events_of(
                    tx,
                    wf,
                    &[
                        EventType::WorkflowInitiated.topic(),
                        EventType::TaskAdded.topic(),
                    ],
                    upto,
                )?;
                let mut info = WorkflowInfo::empty(wf);
                for n in &events {
                    if let Some(e) = decode(n) {
                        info.observe(n.id, &e);
                    }
                }
                let info = Arc::new(info);
                self.workflows.insert(wf, Some(info.clone()));
                info
            }
        };
        Ok(info.initiated.then_some(info))
    }

    /// The workflow a task belongs to: the one its TaskCreated names, once
    /// that workflow is initiated and its TaskAdded names the task. `None`
    /// while either is missing.
    pub fn task_workflow(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        task: &TaskInfo,
    ) -> Result<Option<Arc<WorkflowInfo>>> {
        let Some(wf) = self.workflow(tx, upto, task.workflow_id)? else {
            return Ok(None);
        };
        Ok(wf.added_at(task.id).is_some().then_some(wf))
    }

    /// The tasks that belong to `wf`, in TaskAdded order, each with the
    /// notification id of its TaskAdded.
    pub fn workflow_tasks(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        wf: &WorkflowInfo,
        need: Need,
    ) -> Result<Vec<(Arc<TaskInfo>, i64)>> {
        let ids: Vec<Uuid> = wf.tasks.iter().map(|(t, _)| *t).collect();
        self.ensure_tasks(
            tx,
            upto,
            &ids,
            Need {
                created: true,
                ..need
            },
        )?;
        let mut out = Vec::with_capacity(wf.tasks.len());
        for (task, added_at) in &wf.tasks {
            let facts = self.tasks.get_mut(task).expect("ensured");
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
    pub fn latest_task_progress(
        &mut self,
        tx: &mut dyn Tx,
        upto: i64,
        wf: &WorkflowInfo,
    ) -> Result<Option<Value>> {
        let need = Need {
            created: true,
            job: false,
            progress: true,
        };
        self.consult(wf.tasks.iter().map(|(t, _)| *t).chain([wf.id]));
        let tasks = &mut self.tasks;
        let known = wf.tasks.iter().all(|(t, _)| {
            tasks
                .get_mut(t)
                .is_some_and(|f| f.created.is_some() && f.progress.is_some())
        });
        if !known {
            let ids: Vec<Uuid> = wf.tasks.iter().map(|(t, _)| *t).collect();
            self.ensure_tasks(tx, upto, &ids, need)?;
        }
        let mut best: Option<(i64, Value)> = None;
        for (task, added_at) in &wf.tasks {
            let facts = self.tasks.get_mut(task).expect("ensured");
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

    /// [`convert::interpolate_progress`], remembered for the few progress
    /// texts a log holds.
    pub fn interpolate_progress(&mut self, p: &Value) -> Option<String> {
        let Value::Str(text) = p else {
            return convert::interpolate_progress(p);
        };
        if let Some(r) = self.interpolated.get(text.as_str()) {
            return r.clone();
        }
        let r = convert::interpolate_progress(p);
        if self.interpolated.len() >= 1024 {
            self.interpolated.clear();
        }
        self.interpolated.insert(text.clone(), r.clone());
        r
    }
}
