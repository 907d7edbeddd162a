-- Sessions of the audit browser (/ui/). The browser's cookie holds a
-- random session id, never the API token; only the id's SHA-256 is stored
-- here, with the SHA-256 of the token it signed in with (checked against
-- the live tokens on every page, so revoking the token ends the session).
-- Signing out deletes the row; a session ends at expires_at regardless.
CREATE TABLE eventstream_ui_sessions (
    session_sha256 text        NOT NULL PRIMARY KEY CHECK (session_sha256 ~ '^[0-9a-f]{64}$'),
    token_sha256   text        NOT NULL CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX eventstream_ui_sessions_expires_idx ON eventstream_ui_sessions (expires_at);
