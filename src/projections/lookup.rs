//! What projectors read from the event store.
//!
//! Every function here looks only at events whose notification id is at most
//! `upto`, the notification id of the event being applied. A projection over
//! the whole log (a rebuild, a catch-up) therefore sees exactly what a live
//! projection saw when it applied the same event, and a view row is a
//! function of the log alone.
//!
//! Stored events are filtered by topic before they are decoded, so that an
//! aggregate with many progress updates costs one query and a few decodes.
//!
//! The second half of this module holds the conversions of event values into
//! view columns, with the rules of PROJECTIONS.md for values that the columns
//! cannot hold.

use crate::domain::codec;
use crate::domain::{Event, EventType, Payload, Value};
use crate::error::Result;
use crate::projections::decode;
use crate::store::{Notification, Tx};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One aggregate's stored events up to a notification id, in version order.
pub struct Stream {
    pub id: Uuid,
    events: Vec<Notification>,
}

impl Stream {
    /// Loads `id`'s events with notification id `<= upto` (one query).
    pub fn load(tx: &mut dyn Tx, id: Uuid, upto: i64) -> Result<Stream> {
        let mut events = tx.load_events(id)?;
        events.retain(|n| n.id <= upto);
        Ok(Stream { id, events })
    }

    fn of_type(&self, ty: EventType) -> impl DoubleEndedIterator<Item = &Notification> + '_ {
        let topic = ty.topic();
        self.events.iter().filter(move |n| n.event.topic == topic)
    }

    /// The first decodable event of this type, with its notification id.
    pub fn first(&self, ty: EventType) -> Option<(i64, Event)> {
        self.of_type(ty).find_map(|n| decode(n).map(|e| (n.id, e)))
    }

    /// The last decodable event of this type, with its notification id.
    pub fn last(&self, ty: EventType) -> Option<(i64, Event)> {
        self.of_type(ty).rev().find_map(|n| decode(n).map(|e| (n.id, e)))
    }

    /// Every decodable event of this type, oldest first.
    pub fn all(&self, ty: EventType) -> Vec<(i64, Event)> {
        self.of_type(ty).filter_map(|n| decode(n).map(|e| (n.id, e))).collect()
    }
}

/// A task as its TaskCreated event describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub id: Uuid,
    /// The workflow named in TaskCreated (the task belongs to it once that
    /// workflow's TaskAdded names the task, see [`task_workflow`]).
    pub workflow_id: Uuid,
    pub name: Value,
    pub version: Value,
    /// TaskCreated's timestamp.
    pub created: DateTime<Utc>,
    /// TaskCreated's notification id.
    pub created_at: i64,
}

impl TaskInfo {
    pub fn from_stream(s: &Stream) -> Option<TaskInfo> {
        let (at, e) = s.first(EventType::TaskCreated)?;
        match e.payload {
            Payload::TaskCreated { workflow_id, task_name, task_version, .. } => Some(TaskInfo {
                id: s.id,
                workflow_id,
                name: task_name,
                version: task_version,
                created: e.timestamp,
                created_at: at,
            }),
            _ => None,
        }
    }
}

/// A workflow as its WorkflowInitiated and TaskAdded events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowInfo {
    pub id: Uuid,
    pub name: Value,
    pub user: Value,
    pub group: Value,
    /// WorkflowInitiated's timestamp.
    pub initiated: DateTime<Utc>,
    /// The tasks of its TaskAdded events, in that order, each with the
    /// notification id of its first TaskAdded.
    pub tasks: Vec<(Uuid, i64)>,
}

impl WorkflowInfo {
    pub fn from_stream(s: &Stream) -> Option<WorkflowInfo> {
        let (_, e) = s.first(EventType::WorkflowInitiated)?;
        let Payload::WorkflowInitiated { name, user, group, .. } = e.payload else { return None };
        let mut tasks: Vec<(Uuid, i64)> = Vec::new();
        for (at, added) in s.all(EventType::TaskAdded) {
            if let Payload::TaskAdded { task_id } = added.payload {
                if !tasks.iter().any(|(t, _)| *t == task_id) {
                    tasks.push((task_id, at));
                }
            }
        }
        Some(WorkflowInfo { id: s.id, name, user, group, initiated: e.timestamp, tasks })
    }

    /// The notification id of TaskAdded(this workflow, `task`), if any.
    pub fn added_at(&self, task: Uuid) -> Option<i64> {
        self.tasks.iter().find(|(t, _)| *t == task).map(|(_, at)| *at)
    }
}

/// The task's TaskCreated, if stored at or before `upto`.
pub fn task(tx: &mut dyn Tx, task_id: Uuid, upto: i64) -> Result<Option<TaskInfo>> {
    Ok(TaskInfo::from_stream(&Stream::load(tx, task_id, upto)?))
}

/// The workflow's WorkflowInitiated fields and task list, if initiated at or
/// before `upto`.
pub fn workflow(tx: &mut dyn Tx, workflow_id: Uuid, upto: i64) -> Result<Option<WorkflowInfo>> {
    Ok(WorkflowInfo::from_stream(&Stream::load(tx, workflow_id, upto)?))
}

/// The workflow a task belongs to: the one its TaskCreated names, once that
/// workflow is initiated and its TaskAdded names the task (both at or before
/// `upto`). `None` while either is missing.
pub fn task_workflow(tx: &mut dyn Tx, task: &TaskInfo, upto: i64) -> Result<Option<WorkflowInfo>> {
    let Some(wf) = workflow(tx, task.workflow_id, upto)? else { return Ok(None) };
    Ok(wf.added_at(task.id).is_some().then_some(wf))
}

/// The job id of the task's latest JobIdAdded at or before `upto`.
pub fn latest_job_id(tx: &mut dyn Tx, task_id: Uuid, upto: i64) -> Result<Option<Value>> {
    let s = Stream::load(tx, task_id, upto)?;
    Ok(s.last(EventType::JobIdAdded).and_then(|(_, e)| match e.payload {
        Payload::JobIdAdded { job_id } => Some(job_id),
        _ => None,
    }))
}

/// The tasks that belong to `wf` (see [`task_workflow`]), in TaskAdded
/// order, each with its stream (one query per task).
pub fn workflow_tasks(tx: &mut dyn Tx, wf: &WorkflowInfo, upto: i64) -> Result<Vec<(TaskInfo, i64, Stream)>> {
    let mut out = Vec::with_capacity(wf.tasks.len());
    for (task_id, added_at) in &wf.tasks {
        let s = Stream::load(tx, *task_id, upto)?;
        if let Some(info) = TaskInfo::from_stream(&s) {
            if info.workflow_id == wf.id {
                out.push((info, *added_at, s));
            }
        }
    }
    Ok(out)
}

/// The latest progress of any task of the workflow: the value of the
/// ProgressUpdated with the highest notification id at or before `upto`
/// among its tasks, counting only updates after the task joined the
/// workflow. `None` when there is none (the reference's "task_progress"
/// is then unset).
pub fn latest_task_progress(tx: &mut dyn Tx, wf: &WorkflowInfo, upto: i64) -> Result<Option<Value>> {
    let mut best: Option<(i64, Value)> = None;
    for (_, added_at, s) in workflow_tasks(tx, wf, upto)? {
        if let Some((at, e)) = s.last(EventType::ProgressUpdated) {
            if at > added_at && best.as_ref().map_or(true, |(b, _)| at > *b) {
                if let Payload::ProgressUpdated { progress } = e.payload {
                    best = Some((at, progress));
                }
            }
        }
    }
    Ok(best.map(|(_, v)| v))
}

// ------------------------------------------------------ column conversions

/// A value for a 32-bit INTEGER column: `Ok(None)` for None, `Err` (a
/// description for the warning) for anything the column cannot hold.
pub fn int_column(v: &Value) -> std::result::Result<Option<i32>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) => i32::try_from(*i).map(Some).map_err(|_| format!("{i} is outside the 32-bit integer range")),
        Value::BigInt(digits) => Err(format!("{digits} is outside the 32-bit integer range")),
        other => Err(format!("{} is not an integer", codec::encode(other))),
    }
}

/// A value for a VARCHAR column, as Python's `str()` shows a str or a number
/// (what SQLAlchemy stores for them). `Err` (a description) for other types.
pub fn text_column(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::BigInt(d) => Ok(Some(d.clone())),
        Value::Float(f) => {
            let mut s = String::new();
            codec::write_float(*f, &mut s);
            Ok(Some(s.replace("Infinity", "inf").replace("NaN", "nan")))
        }
        other => Err(format!("{} is not text", codec::encode(other))),
    }
}

/// A Slurm job id as the INTEGER key of the job views: base-10 digits with
/// an optional sign and surrounding whitespace, within 32 bits. `Err` (a
/// description) otherwise, e.g. for array job ids such as `12345_7`.
pub fn job_id_column(v: &Value) -> std::result::Result<i32, String> {
    let text = match v {
        Value::Str(s) => s.as_str(),
        Value::Int(i) => return i32::try_from(*i).map_err(|_| format!("job id {i} is outside the 32-bit integer range")),
        Value::BigInt(d) => return Err(format!("job id {d} is outside the 32-bit integer range")),
        other => return Err(format!("job id {} is not an integer", codec::encode(other))),
    };
    let t = text.trim_matches(is_python_space);
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("job id {text:?} is not a base-10 integer"));
    }
    match t.parse::<i64>() {
        Ok(i) => i32::try_from(i).map_err(|_| format!("job id {text:?} is outside the 32-bit integer range")),
        Err(_) => Err(format!("job id {text:?} is outside the 32-bit integer range")),
    }
}

/// Whitespace as Python's `str.strip()` and `int()` see it.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `int(text)` for base 10: surrounding whitespace, one optional
/// sign, ASCII digits with single underscores between them, at most 4300
/// digits (Python's default limit). Returns the sign and the digits.
/// (Python also accepts non-ASCII decimal digits; they are refused here.)
pub fn python_int(text: &str) -> Option<(bool, String)> {
    let t = text.trim_matches(is_python_space);
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut digits = String::with_capacity(body.len());
    let mut prev_digit = false;
    for c in body.chars() {
        match c {
            '0'..='9' => {
                digits.push(c);
                prev_digit = true;
            }
            '_' if prev_digit => prev_digit = false,
            _ => return None,
        }
    }
    if digits.is_empty() || !prev_digit || digits.len() > 4300 {
        return None;
    }
    Some((negative, digits))
}

/// The workflow progress of a generic task's status update, as the
/// reference interpolates it: `50 + (int(p.strip('%')) / 100) * 40`,
/// formatted as Python's `f"{x}%"`. `None` where the reference would raise
/// (not a str, not an integer, a quotient too large for a float).
pub fn interpolate_progress(task_progress: &Value) -> Option<String> {
    let text = task_progress.as_str()?;
    let (negative, digits) = python_int(text.trim_matches('%'))?;
    // `int / 100` is correctly rounded in Python; so is parsing the decimal.
    let quotient: f64 = format!("{}{digits}e-2", if negative { "-" } else { "" }).parse().ok()?;
    if !quotient.is_finite() {
        return None;
    }
    let x = 50.0 + quotient * 40.0;
    let mut out = String::new();
    codec::write_float(x, &mut out);
    out.push('%');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_accepts_what_int_accepts() {
        assert_eq!(python_int(" 43 "), Some((false, "43".into())));
        assert_eq!(python_int("+1_000"), Some((false, "1000".into())));
        assert_eq!(python_int("-007"), Some((true, "007".into())));
        assert_eq!(python_int("\t12\n"), Some((false, "12".into())));
        for bad in ["", " ", "43.5", "1__0", "_1", "1_", "+", "4 3", "0x10", "--1", "1e3"] {
            assert_eq!(python_int(bad), None, "{bad:?}");
        }
        assert_eq!(python_int(&"9".repeat(4301)), None);
    }

    #[test]
    fn interpolation_is_formatted_like_python() {
        let p = |s: &str| interpolate_progress(&Value::Str(s.into()));
        assert_eq!(p("43%").as_deref(), Some("67.2%"));
        assert_eq!(p("50%").as_deref(), Some("70.0%"));
        assert_eq!(p("0").as_deref(), Some("50.0%"));
        assert_eq!(p("100%").as_deref(), Some("90.0%"));
        assert_eq!(p("%%7%").as_deref(), Some("52.8%"));
        assert_eq!(p("33%").as_deref(), Some("63.2%"));
        assert_eq!(p("-10%").as_deref(), Some("46.0%"));
        assert_eq!(p("1_0%").as_deref(), Some("54.0%"));
        assert_eq!(p("43.5%"), None);
        assert_eq!(p("43 %").as_deref(), Some("67.2%"));
        assert_eq!(p("43% "), None);
        assert_eq!(interpolate_progress(&Value::Int(43)), None);
        assert_eq!(p(&"9".repeat(400)), None);
        assert_eq!(p("100000000000000000000").as_deref(), Some("4e+19%"));
    }

    #[test]
    fn job_ids() {
        assert_eq!(job_id_column(&Value::Str("12345".into())), Ok(12345));
        assert_eq!(job_id_column(&Value::Str(" 12345\n".into())), Ok(12345));
        assert_eq!(job_id_column(&Value::Int(7)), Ok(7));
        assert!(job_id_column(&Value::Str("12345_7".into())).is_err());
        assert!(job_id_column(&Value::Str("1_2".into())).is_err());
        assert!(job_id_column(&Value::Str("2147483648".into())).is_err());
        assert_eq!(job_id_column(&Value::Str("2147483647".into())), Ok(i32::MAX));
        assert!(job_id_column(&Value::Str("".into())).is_err());
        assert!(job_id_column(&Value::Null).is_err());
    }
}
