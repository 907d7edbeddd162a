-- Each sign-in counts its token's live sessions to keep at most
-- Config.MaxSessions of them (the oldest go): the index finds a token's
-- sessions, newest first, without reading every browser's.
CREATE INDEX eventstream_ui_sessions_token_idx ON eventstream_ui_sessions (token_sha256, created_at);
