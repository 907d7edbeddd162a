-- The position of the event that set a distribution's published flag
-- (published, unpublished, deleted), its publication time (published)
-- and its version (created, published, version bumped): an event applied
-- late (a parked event retried) does not move them back. Rows written
-- before this migration have 0, which every event is later than, as
-- before.
ALTER TABLE course_distributions
    ADD COLUMN IF NOT EXISTS publication_position         bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS publication_prepare_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS publish_position             bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS publish_prepare_position     bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS version_position             bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS version_prepare_position     bigint NOT NULL DEFAULT 0;
