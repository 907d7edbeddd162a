-- Course and distribution events the catalog did not apply because they
-- are not in the stream of the aggregate their payload names (a course
-- event for course C outside course-C, a distribution event for
-- distribution D outside distribution-D): no module decided them; a
-- tenant appended them raw into a stream of its own. One row per tenant,
-- stream and event type, so a producer doing it in a loop makes one row
-- count up rather than a row per event. The first and last of them are
-- the first and last in the log, whatever order they were applied in.
CREATE TABLE catalog_skipped_events (
    tenant_id              text        NOT NULL,
    stream                 text        NOT NULL,
    event_type             text        NOT NULL,
    events                 bigint      NOT NULL,
    first_event_id         uuid        NOT NULL,
    first_position         bigint      NOT NULL,
    first_prepare_position bigint      NOT NULL,
    first_at               timestamptz NOT NULL,
    last_event_id          uuid        NOT NULL,
    last_position          bigint      NOT NULL,
    last_prepare_position  bigint      NOT NULL,
    last_at                timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, stream, event_type)
);

COMMENT ON TABLE catalog_skipped_events IS 'eventstream read model (projection "catalog"): course and distribution events not applied to the catalog because they are not in their aggregate''s own stream (appended raw, not decided by a module), counted per tenant, stream and type.';
