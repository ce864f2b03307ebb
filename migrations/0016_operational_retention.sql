-- Refused process-manager commands are kept for operators for a configurable time
-- (PURSER_REJECTION_RETENTION_DAYS); the retention worker (command-api/src/retention.rs)
-- deletes older rows in small batches along this index, as it does for trace events.
create index outbox_rejections_rejected_at on purser.outbox_rejections (rejected_at);

comment on table purser.outbox_rejections is
    'Process-manager commands the target aggregate refused; kept PURSER_REJECTION_RETENTION_DAYS.';
