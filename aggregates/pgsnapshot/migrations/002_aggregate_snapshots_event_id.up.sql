-- The id of the event at the snapshot's version: a load uses the snapshot
-- only when the stream's event at that version has this id. Rows written
-- before this column are NULL: never used, and replaced by the next save.
ALTER TABLE aggregate_snapshots ADD COLUMN event_id uuid;
