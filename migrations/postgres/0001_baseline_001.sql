-- baseline_001: the four BIOMERO view tables, as biomero 2.8.3 creates them.
CREATE TABLE IF NOT EXISTS biomero_job_view (
	slurm_job_id SERIAL NOT NULL, 
	"user" INTEGER NOT NULL, 
	"group" INTEGER NOT NULL, 
	task_id UUID, 
	PRIMARY KEY (slurm_job_id)
);
CREATE TABLE IF NOT EXISTS biomero_job_progress_view (
	slurm_job_id SERIAL NOT NULL, 
	status VARCHAR NOT NULL, 
	progress VARCHAR, 
	PRIMARY KEY (slurm_job_id)
);
CREATE TABLE IF NOT EXISTS biomero_workflow_progress_view (
	workflow_id UUID NOT NULL, 
	status VARCHAR, 
	progress VARCHAR, 
	"user" INTEGER, 
	"group" INTEGER, 
	name VARCHAR, 
	task VARCHAR, 
	main_task_name VARCHAR, 
	start_time TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (workflow_id)
);
CREATE TABLE IF NOT EXISTS biomero_task_execution (
	task_id UUID NOT NULL, 
	task_name VARCHAR NOT NULL, 
	task_version VARCHAR, 
	user_id INTEGER, 
	group_id INTEGER, 
	status VARCHAR NOT NULL, 
	start_time TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	end_time TIMESTAMP WITHOUT TIME ZONE, 
	error_type VARCHAR, 
	PRIMARY KEY (task_id)
);
