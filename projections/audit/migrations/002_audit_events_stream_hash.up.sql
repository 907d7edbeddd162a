-- A stream's events are few and read whole; a hash index finds them at a
-- fraction of the write cost of a B-tree over long, random stream ids.
-- It replaces 001's B-tree on (stream, version) in every generation, new
-- or already migrated.
DROP INDEX IF EXISTS audit_events_stream_idx;
CREATE INDEX audit_events_stream_idx ON audit_events USING hash (stream);
