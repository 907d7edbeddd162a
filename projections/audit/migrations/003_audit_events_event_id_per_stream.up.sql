-- An event id is unique in the whole log on PostgreSQL, but only per
-- stream on EventStoreDB (Features.PerStreamIDs): there the same id in
-- another stream is another event, which 001's unique index refused, so
-- the audit log parked it. The position is the row's key; the id index
-- only finds events, and stays unique in practice where the backend
-- makes it so.
DROP INDEX IF EXISTS audit_events_event_id_idx;
CREATE INDEX audit_events_event_id_idx ON audit_events (event_id);
