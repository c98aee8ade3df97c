//! The WorkflowRun and Task aggregates: state folded from their events, and
//! the events their commands produce.

use crate::domain::events::{now, Event, EventType, Payload};
use crate::domain::value::Value;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRunState {
    pub id: Uuid,
    pub version: i64,
    pub created_on: DateTime<Utc>,
    pub modified_on: DateTime<Utc>,
    pub name: Value,
    pub description: Value,
    pub user: Value,
    pub group: Value,
    pub tasks: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub id: Uuid,
    pub version: i64,
    pub created_on: DateTime<Utc>,
    pub modified_on: DateTime<Utc>,
    pub workflow_id: Uuid,
    pub task_name: Value,
    pub task_version: Value,
    pub input_data: Value,
    pub params: Value,
    pub job_ids: Vec<Value>,
    pub results: Vec<Value>,
    pub result_message: Value,
    pub status: Value,
    /// Python's Task has no `progress` until the first ProgressUpdated; the
    /// attribute reads as None here until then.
    pub progress: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    WorkflowRun(WorkflowRunState),
    Task(TaskState),
}

impl Aggregate {
    /// Folds an aggregate's events, oldest first. `None` when there are none.
    pub fn replay<I: IntoIterator<Item = Event>>(events: I) -> Result<Option<Aggregate>> {
        let mut agg: Option<Aggregate> = None;
        for e in events {
            Aggregate::fold_owned(&mut agg, e)?;
        }
        Ok(agg)
    }

    /// Folds the next event into `agg` (creating it from the first).
    pub fn fold(agg: &mut Option<Aggregate>, e: &Event) -> Result<()> {
        Self::fold_owned(agg, e.clone())
    }

    /// [`fold`](Aggregate::fold) of an event the caller no longer needs:
    /// its values move into the state instead of being copied (a stored
    /// history is folded this way, one decoded event at a time).
    pub fn fold_owned(agg: &mut Option<Aggregate>, e: Event) -> Result<()> {
        match agg.as_mut() {
            None => *agg = Some(Aggregate::create(e)?),
            Some(a) => a.apply_owned(e)?,
        }
        Ok(())
    }

    fn create(e: Event) -> Result<Aggregate> {
        if e.originator_version != 0 {
            return Err(Error::decode(format!(
                "aggregate {} starts at version {}, not 0",
                e.originator_id, e.originator_version
            )));
        }
        let (id, timestamp) = (e.originator_id, e.timestamp);
        match e.payload {
            Payload::WorkflowInitiated {
                name,
                description,
                user,
                group,
            } => Ok(Aggregate::WorkflowRun(WorkflowRunState {
                id,
                version: 0,
                created_on: timestamp,
                modified_on: timestamp,
                name,
                description,
                user,
                group,
                tasks: Vec::new(),
            })),
            Payload::TaskCreated {
                workflow_id,
                task_name,
                task_version,
                input_data,
                params,
            } => Ok(Aggregate::Task(TaskState {
                id,
                version: 0,
                created_on: timestamp,
                modified_on: timestamp,
                workflow_id,
                task_name,
                task_version,
                input_data,
                params,
                job_ids: Vec::new(),
                results: Vec::new(),
                result_message: Value::Null,
                status: Value::Null,
                progress: Value::Null,
            })),
            _ => Err(Error::decode(format!(
                "aggregate {} starts with {}, not a created event",
                e.originator_id,
                e.topic()
            ))),
        }
    }

    /// Applies one later event.
    pub fn apply(&mut self, e: &Event) -> Result<()> {
        self.apply_owned(e.clone())
    }

    /// [`apply`](Aggregate::apply), moving the event's values into the state.
    pub fn apply_owned(&mut self, e: Event) -> Result<()> {
        if e.originator_version != self.version() + 1 {
            return Err(Error::decode(format!(
                "aggregate {} has version {} after version {}",
                e.originator_id,
                e.originator_version,
                self.version()
            )));
        }
        let workflow_event = e.payload.event_type().is_workflow_event();
        match self {
            Aggregate::WorkflowRun(w) if workflow_event => {
                match e.payload {
                    Payload::TaskAdded { task_id } => w.tasks.push(task_id),
                    Payload::WorkflowStarted
                    | Payload::WorkflowCompleted
                    | Payload::WorkflowFailed { .. } => {}
                    _ => return Err(misplaced(&e)),
                }
                w.version = e.originator_version;
                w.modified_on = e.timestamp;
            }
            Aggregate::Task(t) if !workflow_event => {
                match e.payload {
                    Payload::JobIdAdded { job_id } => t.job_ids.push(job_id),
                    Payload::StatusUpdated { status } => t.status = status,
                    Payload::ProgressUpdated { progress } => t.progress = progress,
                    Payload::ResultAdded { result } => t.results.push(result),
                    Payload::TaskStarted => {}
                    Payload::TaskCompleted { result } => t.result_message = result,
                    Payload::TaskFailed { error_message } => t.result_message = error_message,
                    _ => return Err(misplaced(&e)),
                }
                t.version = e.originator_version;
                t.modified_on = e.timestamp;
            }
            _ => return Err(misplaced(&e)),
        }
        Ok(())
    }

    pub fn id(&self) -> Uuid {
        match self {
            Aggregate::WorkflowRun(w) => w.id,
            Aggregate::Task(t) => t.id,
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            Aggregate::WorkflowRun(w) => w.version,
            Aggregate::Task(t) => t.version,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Aggregate::WorkflowRun(_) => "WorkflowRun",
            Aggregate::Task(_) => "Task",
        }
    }

    /// The next event of this aggregate, as its command produces it. The
    /// payload must belong to this kind of aggregate.
    pub fn trigger(&self, payload: Payload) -> Result<Event> {
        let belongs = match self {
            Aggregate::WorkflowRun(_) => payload.event_type().is_workflow_event(),
            Aggregate::Task(_) => !payload.event_type().is_workflow_event(),
        };
        let is_created = matches!(
            payload.event_type(),
            EventType::WorkflowInitiated | EventType::TaskCreated
        );
        if !belongs || is_created {
            return Err(Error::value(format!(
                "{} is a {}, which has no {} event",
                self.id(),
                self.kind(),
                payload
                    .event_type()
                    .topic()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
            )));
        }
        Ok(Event {
            originator_id: self.id(),
            originator_version: self.version() + 1,
            timestamp: now(),
            payload,
        })
    }
}

fn misplaced(e: &Event) -> Error {
    Error::decode(format!(
        "{} does not apply to aggregate {}",
        e.topic(),
        e.originator_id
    ))
}

/// A random (version 4) id drawn from the operating system for each call, so
/// that a forked child never repeats its parent's ids (a user-space generator
/// would be copied with the process).
pub fn new_id() -> Uuid {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The first event of a new aggregate (WorkflowInitiated or TaskCreated).
pub fn create_event(payload: Payload) -> Event {
    debug_assert!(payload.event_type().originator_topic().is_some());
    Event {
        originator_id: new_id(),
        originator_version: 0,
        timestamp: now(),
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_created() -> Event {
        create_event(Payload::TaskCreated {
            workflow_id: Uuid::new_v4(),
            task_name: "t".into(),
            task_version: "1".into(),
            input_data: Value::Dict(vec![]),
            params: Value::Dict(vec![]),
        })
    }

    #[test]
    fn task_folds_its_events() {
        let created = task_created();
        let agg = Aggregate::replay([created.clone()]).unwrap().unwrap();
        let e1 = agg
            .trigger(Payload::JobIdAdded {
                job_id: "12".into(),
            })
            .unwrap();
        let mut agg2 = agg.clone();
        agg2.apply(&e1).unwrap();
        let e2 = agg2
            .trigger(Payload::TaskFailed {
                error_message: "x".into(),
            })
            .unwrap();
        let agg3 = Aggregate::replay([created, e1, e2]).unwrap().unwrap();
        let Aggregate::Task(t) = agg3 else { panic!() };
        assert_eq!(t.version, 2);
        assert_eq!(t.job_ids, vec![Value::from("12")]);
        assert_eq!(t.result_message, Value::from("x"));
    }

    #[test]
    fn workflow_events_do_not_apply_to_tasks() {
        let agg = Aggregate::replay([task_created()]).unwrap().unwrap();
        assert!(agg.trigger(Payload::WorkflowStarted).is_err());
    }

    #[test]
    fn gaps_in_versions_are_refused() {
        let created = task_created();
        let mut e = Aggregate::replay([created.clone()])
            .unwrap()
            .unwrap()
            .trigger(Payload::TaskStarted)
            .unwrap();
        e.originator_version = 5;
        assert!(Aggregate::replay([created, e]).is_err());
    }
}
