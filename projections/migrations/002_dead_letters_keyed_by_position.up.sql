-- A parked event is keyed by its position as well as its id: EventStoreDB
-- lets two streams hold events with the same id, and keyed by id alone
-- the second event parked would update the first's entry, so one of them
-- could be neither listed nor retried. On PostgreSQL an id is unique in
-- the log, so nothing changes there. Safe to run twice.
CREATE UNIQUE INDEX IF NOT EXISTS projection_dead_letters_event_key
    ON projection_dead_letters (projection, generation, event_id, commit_position, prepare_position);
ALTER TABLE projection_dead_letters DROP CONSTRAINT IF EXISTS projection_dead_letters_projection_generation_event_id_key;
