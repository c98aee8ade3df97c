-- views_002: indexes for the dashboards' queries (tasks by start time,
-- a user's workflows by start time). Every statement is idempotent.
CREATE INDEX IF NOT EXISTS ix_biomero_task_execution_start_time
	ON biomero_task_execution (start_time);
CREATE INDEX IF NOT EXISTS ix_biomero_workflow_progress_view_user_start_time
	ON biomero_workflow_progress_view ("user", start_time);
