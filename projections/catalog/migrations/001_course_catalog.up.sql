-- The course catalog: one row per course, the table an analyst queries
-- first. Distribution figures are summed from course_distributions.
CREATE TABLE course_catalog (
    tenant_id              text        NOT NULL,
    course_id              uuid        NOT NULL,
    title                  text,
    topic                  text,
    language               text,
    workflow_state         text        NOT NULL DEFAULT 'unknown',
    attempt                integer     NOT NULL DEFAULT 0,
    lesson_count           integer     NOT NULL DEFAULT 0,
    lessons_generated      integer     NOT NULL DEFAULT 0,
    quiz_questions         integer,
    landing_page_slug      text,
    failure_stage          text,
    failure_reason         text,
    staging_url            text,
    distribution_count     integer     NOT NULL DEFAULT 0,
    distribution_status    text        NOT NULL DEFAULT 'none' CHECK (distribution_status IN ('none', 'active', 'deleted')),
    publication_status     text        NOT NULL DEFAULT 'unpublished' CHECK (publication_status IN ('unpublished', 'published')),
    published_version      text,
    views                  bigint      NOT NULL DEFAULT 0,
    enrollment_clicks      bigint      NOT NULL DEFAULT 0,
    requested_at           timestamptz,
    completed_at           timestamptz,
    failed_at              timestamptz,
    deployed_at            timestamptz,
    updated_at             timestamptz NOT NULL,
    -- The position of the event that set workflow_state: a late (retried)
    -- event never moves the state back.
    state_position         bigint      NOT NULL DEFAULT 0,
    state_prepare_position bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, course_id)
);
CREATE INDEX course_catalog_state_idx ON course_catalog (tenant_id, workflow_state);
CREATE INDEX course_catalog_publication_idx ON course_catalog (tenant_id, publication_status);

-- One row per distribution of a course on a channel.
CREATE TABLE course_distributions (
    tenant_id         text        NOT NULL,
    distribution_id   uuid        NOT NULL,
    course_id         uuid        NOT NULL,
    channel           text,
    title             text,
    version           text,
    status            text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    published         boolean     NOT NULL DEFAULT false,
    published_at      timestamptz,
    price_cents       bigint,
    currency          text,
    staging_url       text,
    micro_niches      integer     NOT NULL DEFAULT 0,
    views             bigint      NOT NULL DEFAULT 0,
    enrollment_clicks bigint      NOT NULL DEFAULT 0,
    created_at        timestamptz,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, distribution_id)
);
CREATE INDEX course_distributions_course_idx ON course_distributions (tenant_id, course_id);

COMMENT ON TABLE course_catalog IS 'eventstream read model (projection "catalog"): one row per course with workflow state, lessons, distribution, publication, views and enrollment clicks.';
COMMENT ON TABLE course_distributions IS 'eventstream read model (projection "catalog"): one row per course distribution.';
