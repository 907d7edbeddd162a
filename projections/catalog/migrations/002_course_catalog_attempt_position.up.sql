-- The position of the request that started the course's current attempt:
-- the outline, lessons, quiz and landing page of an earlier attempt,
-- applied late (a parked event retried), change nothing. Rows written
-- before this migration have 0, which every event is later than, as
-- before.
ALTER TABLE course_catalog
    ADD COLUMN IF NOT EXISTS attempt_position         bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS attempt_prepare_position bigint NOT NULL DEFAULT 0;
