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

    pub fn from_topic(topic: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.topic() == topic)
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
