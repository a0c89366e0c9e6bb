-- What Baton of schema 3 (before Alembic) created on postgresql: the DDL of
-- SQLModel.metadata.create_all, frozen. Statements end with ';' on a line's end.

CREATE TABLE alert_runs (
	id SERIAL NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	fingerprint VARCHAR(200) NOT NULL,
	source VARCHAR(32) NOT NULL,
	playbook VARCHAR(200) NOT NULL,
	trigger INTEGER NOT NULL,
	name VARCHAR(500) NOT NULL,
	summary VARCHAR NOT NULL,
	links JSON NOT NULL,
	repeats INTEGER NOT NULL,
	first_at TIMESTAMP WITH TIME ZONE NOT NULL,
	last_at TIMESTAMP WITH TIME ZONE NOT NULL,
	resolved_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id)
);

CREATE INDEX ix_alert_runs_fingerprint ON alert_runs (fingerprint);

CREATE INDEX ix_alert_runs_run_id ON alert_runs (run_id);

CREATE TABLE alerts (
	id VARCHAR(32) NOT NULL,
	source VARCHAR(32) NOT NULL,
	fingerprint VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	name VARCHAR(500) NOT NULL,
	labels JSON NOT NULL,
	annotations JSON NOT NULL,
	severity VARCHAR(64),
	starts_at TIMESTAMP WITH TIME ZONE,
	ends_at TIMESTAMP WITH TIME ZONE,
	links JSON NOT NULL,
	raw JSON,
	received_at TIMESTAMP WITH TIME ZONE NOT NULL,
	outcome VARCHAR(16) NOT NULL,
	reason VARCHAR,
	run_id VARCHAR(32),
	processed_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id)
);

CREATE INDEX ix_alerts_fingerprint ON alerts (fingerprint);

CREATE INDEX ix_alerts_outcome ON alerts (outcome);

CREATE INDEX ix_alerts_received_at ON alerts (received_at);

CREATE INDEX ix_alerts_run_id ON alerts (run_id);

CREATE TABLE audit (
	id SERIAL NOT NULL,
	at TIMESTAMP WITH TIME ZONE NOT NULL,
	actor VARCHAR(200) NOT NULL,
	action VARCHAR(64) NOT NULL,
	target VARCHAR(500) NOT NULL,
	source JSON NOT NULL,
	detail JSON NOT NULL,
	outcome VARCHAR(32) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_at ON audit (at);

CREATE TABLE chat_posts (
	id SERIAL NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	step_id VARCHAR(200) NOT NULL,
	kind VARCHAR(64) NOT NULL,
	channel VARCHAR(200) NOT NULL,
	thread_ts VARCHAR(32),
	ts VARCHAR(32),
	state VARCHAR(16) NOT NULL,
	error VARCHAR,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (run_id, step_id, kind)
);

CREATE INDEX ix_chat_posts_run_id ON chat_posts (run_id);

CREATE TABLE runs (
	id VARCHAR(32) NOT NULL,
	playbook VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempt INTEGER NOT NULL,
	params JSON NOT NULL,
	secret_params VARCHAR,
	trigger VARCHAR(32) NOT NULL,
	source JSON NOT NULL,
	requested_by VARCHAR(200) NOT NULL,
	parent_run_id VARCHAR(32),
	parent_step_id VARCHAR(200),
	concurrency_key VARCHAR(500),
	definition JSON NOT NULL,
	error VARCHAR,
	failed_step VARCHAR,
	stop_reason VARCHAR(16),
	stopped_by VARCHAR(200),
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	queued_at TIMESTAMP WITH TIME ZONE,
	started_at TIMESTAMP WITH TIME ZONE,
	finished_at TIMESTAMP WITH TIME ZONE,
	deadline_at TIMESTAMP WITH TIME ZONE,
	owner VARCHAR(200),
	epoch INTEGER NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_runs_concurrency_key ON runs (concurrency_key);

CREATE INDEX ix_runs_created_at ON runs (created_at);

CREATE INDEX ix_runs_parent_run_id ON runs (parent_run_id);

CREATE INDEX ix_runs_playbook ON runs (playbook);

CREATE INDEX ix_runs_status ON runs (status);

CREATE TABLE schedules (
	id VARCHAR(32) NOT NULL,
	playbook VARCHAR(200) NOT NULL,
	kind VARCHAR(8) NOT NULL,
	cron VARCHAR(200),
	timezone VARCHAR(64) NOT NULL,
	params JSON NOT NULL,
	secret_params VARCHAR,
	origin VARCHAR(16) NOT NULL,
	created_by VARCHAR(200) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	next_fire_at TIMESTAMP WITH TIME ZONE,
	last_fire_at TIMESTAMP WITH TIME ZONE,
	last_run_id VARCHAR(32),
	missed INTEGER NOT NULL,
	last_error VARCHAR,
	PRIMARY KEY (id)
);

CREATE INDEX ix_schedules_next_fire_at ON schedules (next_fire_at);

CREATE INDEX ix_schedules_playbook ON schedules (playbook);

CREATE TABLE schema_version (
	version SERIAL NOT NULL,
	PRIMARY KEY (version)
);

CREATE TABLE slack_events (
	event_id VARCHAR(64) NOT NULL,
	received_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (event_id)
);

CREATE INDEX ix_slack_events_received_at ON slack_events (received_at);

CREATE TABLE approvals (
	id VARCHAR(32) NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	step_id VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	spec JSON NOT NULL,
	requested_by VARCHAR(200) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	deadline_at TIMESTAMP WITH TIME ZONE,
	closed_at TIMESTAMP WITH TIME ZONE,
	outcome_reason VARCHAR,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_approvals_run_id ON approvals (run_id);

CREATE INDEX ix_approvals_status ON approvals (status);

CREATE TABLE attempts (
	id SERIAL NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	step_id VARCHAR(200) NOT NULL,
	number INTEGER NOT NULL,
	run_attempt INTEGER NOT NULL,
	status VARCHAR(16) NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE NOT NULL,
	finished_at TIMESTAMP WITH TIME ZONE,
	output JSON,
	error VARCHAR,
	attachments JSON,
	PRIMARY KEY (id),
	UNIQUE (run_id, step_id, run_attempt, number),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE TABLE run_logs (
	id SERIAL NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	step_id VARCHAR(200),
	at TIMESTAMP WITH TIME ZONE NOT NULL,
	level VARCHAR(16) NOT NULL,
	message VARCHAR NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_run_logs_run_id ON run_logs (run_id);

CREATE TABLE steps (
	run_id VARCHAR(32) NOT NULL,
	step_id VARCHAR(200) NOT NULL,
	phase VARCHAR(16) NOT NULL,
	position INTEGER NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	output JSON,
	error VARCHAR,
	started_at TIMESTAMP WITH TIME ZONE,
	finished_at TIMESTAMP WITH TIME ZONE,
	wake_at TIMESTAMP WITH TIME ZONE,
	wake_reason VARCHAR(16),
	approval_id VARCHAR(32),
	child_run_id VARCHAR(32),
	PRIMARY KEY (run_id, step_id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_steps_wake_at ON steps (wake_at);

CREATE TABLE decisions (
	id SERIAL NOT NULL,
	approval_id VARCHAR(32) NOT NULL,
	"user" VARCHAR(200) NOT NULL,
	decision VARCHAR(16) NOT NULL,
	comment VARCHAR NOT NULL,
	at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (approval_id, "user"),
	FOREIGN KEY(approval_id) REFERENCES approvals (id)
);

CREATE INDEX ix_decisions_approval_id ON decisions (approval_id);
