-- An idempotent consumer's record names the event by its stream and
-- stream version as well as its id: EventStoreDB lets two streams hold
-- events with the same id, and keyed by id alone the second event was
-- taken for the first and its consumer silently skipped it. Not by
-- position, as parked events are: processed_events outlives generations,
-- and a log copied to another store (eventstore.Copy) keeps every event's
-- id, stream and version but not its position, so the records still hold
-- after a migration. Rows recorded before keep stream '' and version 0
-- (no event has either): they name the event by its id alone, as before,
-- and still count for every event with that id (on PostgreSQL an id is
-- unique in the log, so nothing changes there). Safe to run twice.
ALTER TABLE processed_events ADD COLUMN IF NOT EXISTS stream text NOT NULL DEFAULT '';
ALTER TABLE processed_events ADD COLUMN IF NOT EXISTS stream_version bigint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS processed_events_event_key
    ON processed_events (consumer, event_id, stream, stream_version);
ALTER TABLE processed_events DROP CONSTRAINT IF EXISTS processed_events_pkey;
