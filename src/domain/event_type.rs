//! The event types of the WorkflowRun and Task aggregates: their topics and
//! field names (a leaf of the domain: the upcasters and the events build on
//! it).

pub const WORKFLOW_RUN_TOPIC: &str = "biomero.eventsourcing:WorkflowRun";
pub const TASK_TOPIC: &str = "biomero.eventsourcing:Task";

/// Every event type, with its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    WorkflowInitiated,
    TaskAdded,
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed,
    TaskCreated,
    JobIdAdded,
    StatusUpdated,
    ProgressUpdated,
    ResultAdded,
    TaskStarted,
    TaskCompleted,
    TaskFailed,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::WorkflowInitiated,
        EventType::TaskAdded,
        EventType::WorkflowStarted,
        EventType::WorkflowCompleted,
        EventType::WorkflowFailed,
        EventType::TaskCreated,
        EventType::JobIdAdded,
        EventType::StatusUpdated,
        EventType::ProgressUpdated,
        EventType::ResultAdded,
        EventType::TaskStarted,
        EventType::TaskCompleted,
        EventType::TaskFailed,
    ];

    pub fn topic(self) -> &'static str {
        use EventType::*;
        match self {
            WorkflowInitiated => "biomero.eventsourcing:WorkflowRun.WorkflowInitiated",
            TaskAdded => "biomero.eventsourcing:WorkflowRun.TaskAdded",
            WorkflowStarted => "biomero.eventsourcing:WorkflowRun.WorkflowStarted",
            WorkflowCompleted => "biomero.eventsourcing:WorkflowRun.WorkflowCompleted",
            WorkflowFailed => "biomero.eventsourcing:WorkflowRun.WorkflowFailed",
            TaskCreated => "biomero.eventsourcing:Task.TaskCreated",
            JobIdAdded => "biomero.eventsourcing:Task.JobIdAdded",
            StatusUpdated => "biomero.eventsourcing:Task.StatusUpdated",
            ProgressUpdated => "biomero.eventsourcing:Task.ProgressUpdated",
            ResultAdded => "biomero.eventsourcing:Task.ResultAdded",
            TaskStarted => "biomero.eventsourcing:Task.TaskStarted",
            TaskCompleted => "biomero.eventsourcing:Task.TaskCompleted",
            TaskFailed => "biomero.eventsourcing:Task.TaskFailed",
        }
    }

    /// The event type whose [`topic`](EventType::topic) is exactly `topic`.
    /// (One match on what follows the topics' common prefix, not a search
    /// of every topic: this runs for each event read.)
    pub fn from_topic(topic: &str) -> Option<EventType> {
        use EventType::*;
        Some(match topic.strip_prefix("biomero.eventsourcing:")? {
            "Task.ProgressUpdated" => ProgressUpdated,
            "Task.StatusUpdated" => StatusUpdated,
            "Task.TaskCreated" => TaskCreated,
            "Task.JobIdAdded" => JobIdAdded,
            "Task.ResultAdded" => ResultAdded,
            "Task.TaskStarted" => TaskStarted,
            "Task.TaskCompleted" => TaskCompleted,
            "Task.TaskFailed" => TaskFailed,
            "WorkflowRun.WorkflowInitiated" => WorkflowInitiated,
            "WorkflowRun.TaskAdded" => TaskAdded,
            "WorkflowRun.WorkflowStarted" => WorkflowStarted,
            "WorkflowRun.WorkflowCompleted" => WorkflowCompleted,
            "WorkflowRun.WorkflowFailed" => WorkflowFailed,
            _ => return None,
        })
    }

    /// The field names after `timestamp` (and `originator_topic`), in
    /// declaration order.
    pub fn fields(self) -> &'static [&'static str] {
        use EventType::*;
        match self {
            WorkflowInitiated => &["name", "description", "user", "group"],
            TaskAdded => &["task_id"],
            WorkflowStarted | WorkflowCompleted | TaskStarted => &[],
            WorkflowFailed | TaskFailed => &["error_message"],
            TaskCreated => &[
                "workflow_id",
                "task_name",
                "task_version",
                "input_data",
                "params",
            ],
            JobIdAdded => &["job_id"],
            StatusUpdated => &["status"],
            ProgressUpdated => &["progress"],
            ResultAdded | TaskCompleted => &["result"],
        }
    }

    /// The aggregate topic a created event carries, if this is one.
    pub fn originator_topic(self) -> Option<&'static str> {
        match self {
            EventType::WorkflowInitiated => Some(WORKFLOW_RUN_TOPIC),
            EventType::TaskCreated => Some(TASK_TOPIC),
            _ => None,
        }
    }

    pub fn is_workflow_event(self) -> bool {
        self.topic().starts_with(WORKFLOW_RUN_TOPIC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_topic_is_the_inverse_of_topic_and_exact() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_topic(t.topic()), Some(t), "{t:?}");
            let topic = t.topic();
            for other in [
                format!("{topic}.x"),
                format!("{topic} "),
                format!("x{topic}"),
                topic.to_lowercase(),
                topic.replace("biomero.", "biomero_"),
                topic.replace(':', "."),
                topic[..topic.len() - 1].to_owned(),
            ] {
                assert_eq!(EventType::from_topic(&other), None, "{other}");
            }
        }
        assert_eq!(
            EventType::from_topic("biomero.eventsourcing:Task.WorkflowStarted"),
            None
        );
        assert_eq!(
            EventType::from_topic("biomero.eventsourcing:WorkflowRun.TaskStarted"),
            None
        );
    }
}
