-- Bearer tokens of the HTTP API, each mapped to a tenant ("*": an
-- operator who sees every tenant). Only the SHA-256 of a token is stored;
-- the secret is shown once, when the token is created.
CREATE TABLE eventstream_api_tokens (
    token_sha256 text        NOT NULL PRIMARY KEY CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    tenant_id    text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX eventstream_api_tokens_name_idx ON eventstream_api_tokens (name);
