-- views_003: biomero_task_execution.workflow_id, the workflow each task was
-- created for (its TaskCreated event's workflow_id), so that dashboards can
-- join a task to its workflow; indexed for that join.
ALTER TABLE biomero_task_execution ADD COLUMN workflow_id UUID;
CREATE INDEX IF NOT EXISTS ix_biomero_task_execution_workflow_id
	ON biomero_task_execution (workflow_id);
-- The rows that exist hold NULL: biomero_rs's own position of the view goes
-- back to the start, so its next start derives every row again (the
-- correction after another writer) and fills the column.
UPDATE workflowanalytics_tracking SET notification_id = 0
	WHERE application_name = 'biomero_rs';
