-- The position of the event that set a distribution's title (created,
-- updated), price, currency and staging URL (updated, and the course's
-- deployment to staging), and a course's staging URL and deployment time
-- (deployed to staging): an event applied late (a parked event retried)
-- does not move them back. Rows written before this migration have 0,
-- which every event is later than, as before.
ALTER TABLE course_distributions
    ADD COLUMN IF NOT EXISTS title_position            bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS title_prepare_position    bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS price_position            bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS price_prepare_position    bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS currency_position         bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS currency_prepare_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS staging_position          bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS staging_prepare_position  bigint NOT NULL DEFAULT 0;
ALTER TABLE course_catalog
    ADD COLUMN IF NOT EXISTS deploy_position         bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS deploy_prepare_position bigint NOT NULL DEFAULT 0;
