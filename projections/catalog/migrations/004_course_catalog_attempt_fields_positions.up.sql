-- The position of the event that set (or, for a request of a new attempt,
-- cleared) a course's quiz, landing page, completion and failure, and the
-- positions of the lessons counted in lessons_generated: a request of the
-- current attempt applied late (a parked event retried after the
-- attempt's own events) clears only what earlier attempts left, and a
-- late quiz, landing page, completion or failure does not replace a later
-- one. Rows written before this migration have 0 and no lesson positions:
-- every event is later than 0, and a request of a new attempt clears what
-- they have, as before.
ALTER TABLE course_catalog
    ADD COLUMN IF NOT EXISTS lesson_positions            bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS lesson_prepare_positions    bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS quiz_position               bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS quiz_prepare_position       bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS landing_position            bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS landing_prepare_position    bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS completion_position         bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS completion_prepare_position bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS failure_position            bigint   NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS failure_prepare_position    bigint   NOT NULL DEFAULT 0;
