-- Counts per tenant, UTC day (of the event's timestamp) and event type.
CREATE TABLE analytics_event_counts (
    tenant_id  text   NOT NULL,
    day        date   NOT NULL,
    event_type text   NOT NULL,
    events     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, event_type)
);
CREATE INDEX analytics_event_counts_type_day_idx ON analytics_event_counts (event_type, day);

-- For every *_created, *_completed and *_failed type (dot or underscore
-- before the suffix), counts per subject: the type without its suffix
-- (course.generation, mission, mission.task, ir.approval, ...).
CREATE TABLE analytics_outcomes (
    tenant_id text   NOT NULL,
    day       date   NOT NULL,
    subject   text   NOT NULL,
    created   bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, subject)
);

-- Course generation per tenant and day: requested, completed, failed, and
-- the success rate completed / (completed + failed).
CREATE TABLE analytics_generation_daily (
    tenant_id    text    NOT NULL,
    day          date    NOT NULL,
    requested    bigint  NOT NULL DEFAULT 0,
    completed    bigint  NOT NULL DEFAULT 0,
    failed       bigint  NOT NULL DEFAULT 0,
    success_rate numeric GENERATED ALWAYS AS (
        CASE WHEN completed + failed > 0 THEN round(completed::numeric / (completed + failed), 4) END) STORED,
    PRIMARY KEY (tenant_id, day)
);

COMMENT ON TABLE analytics_event_counts IS 'eventstream read model (projection "analytics"): events per tenant, day and type.';
COMMENT ON TABLE analytics_outcomes IS 'eventstream read model (projection "analytics"): created/completed/failed per subject, tenant and day.';
COMMENT ON TABLE analytics_generation_daily IS 'eventstream read model (projection "analytics"): course generation outcomes and success rate per tenant and day.';
