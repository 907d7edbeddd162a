-- The projection runtime's own tables. They live in the runtime's schema
-- (the pool's current schema), beside the views readers query; each
-- projection's read-model tables live in a schema of their own per
-- generation (see docs/projections.md).

-- One row per projection: which generation readers see, which one is
-- being rebuilt, and whether the projection was stopped on an error.
CREATE TABLE projection_state (
    projection          text        NOT NULL PRIMARY KEY,
    active_generation   integer,
    building_generation integer,
    stopped             boolean     NOT NULL DEFAULT false,
    last_error          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per generation of a projection's tables, each in its own schema.
CREATE TABLE projection_generations (
    projection     text        NOT NULL,
    generation     integer     NOT NULL,
    schema_name    text        NOT NULL UNIQUE,
    state          text        NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz,
    retired_at     timestamptz,
    PRIMARY KEY (projection, generation)
);

-- The position each generation has applied, committed in the same
-- transaction as its read-model writes. Both halves of the position are
-- kept so that an EventStoreDB commit/prepare pair fits.
CREATE TABLE projection_checkpoints (
    projection       text        NOT NULL,
    generation       integer     NOT NULL,
    commit_position  bigint      NOT NULL CHECK (commit_position >= 0),
    prepare_position bigint      NOT NULL CHECK (prepare_position >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation)
);

-- Events a projection could not apply after its retries: parked here, with
-- why, while the projection moved on.
CREATE TABLE projection_dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection       text        NOT NULL,
    generation       integer     NOT NULL,
    event_id         uuid        NOT NULL,
    commit_position  bigint      NOT NULL,
    prepare_position bigint      NOT NULL,
    event_type       text        NOT NULL,
    stream           text        NOT NULL,
    tenant_id        text        NOT NULL,
    error            text        NOT NULL,
    attempts         integer     NOT NULL,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, generation, event_id)
);
CREATE INDEX projection_dead_letters_position_idx ON projection_dead_letters (projection, generation, commit_position, prepare_position);

-- Idempotent consumers whose effect lies outside the read-model database
-- (reactions that append commands) record here each event they acted on.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- The views the runtime created in this schema, and for which projection,
-- so that a swap never replaces a relation it does not own.
CREATE TABLE projection_views (
    view_name  text NOT NULL PRIMARY KEY,
    projection text NOT NULL
);
