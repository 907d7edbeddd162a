// Package server is eventstream's HTTP server: a JSON API over the event
// log, projection status and schemas; bearer-token authentication mapped
// to tenants; Prometheus metrics; health and readiness; and /ui/, a
// server-rendered audit browser.
//
// What it promises:
//   - A token reads and writes only its tenant's events: a read of another
//     tenant's stream is 404 (as for a stream that does not exist), an
//     append to it 409 stream_taken, the same answer whatever the stream
//     holds (stream ids are shared, so that the id is taken is all it
//     tells); lists hold only the token's tenant's rows. A token of tenant
//     "*" is an operator's and sees every tenant. No token, or an unknown
//     one: 401.
//   - Tokens are stored as SHA-256 hashes (in a file or the
//     eventstream_api_tokens table) and compared in constant time against
//     every stored hash. The list is re-read every 5 seconds; while it
//     cannot be read, the last list read is used for at most a minute,
//     then every request with a token is 503 until it can: a revoked
//     token is never accepted for longer than that (AuthConfig). A
//     database that hangs instead of refusing holds up no request the
//     last list can answer: one read runs at a time, on its own context
//     and for at most 3 seconds, and a failed one is retried 5 seconds
//     later, not once per request (Authenticator).
//   - An append is validated like every append (eventstore.Validator):
//     400 with the event index, JSON pointer and rule; 409 on a wrong
//     expected version; nothing is written on either.
//   - The domain modules' aggregate streams (course-, distribution-, ir-,
//     approval-, mission-: domain.StreamCategories) are written only by
//     their modules' commands: a raw append into one is 403 module_stream,
//     naming the module, for every token (the operator's too), before the
//     body is read or the stream's owner looked at; nothing is written.
//   - Requests are bounded: body size, events per append, header size,
//     read/write/idle timeouts, a per-request deadline, and the events of
//     the log one GET /events looks at, whatever its filters match
//     (Limits).
//   - Metrics are registered on the registry the caller gives, never the
//     global one, and carry no tenant or token in their labels.
//   - GET /metrics, which carries every tenant's figures, is open unless
//     Config.MetricsToken is set, or Config.MetricsTokenFile (read again
//     when the file changes: a new secret needs no restart, a file that
//     breaks keeps the last good one); then it answers only the bearer
//     token whose SHA-256 that is (compared in constant time, digest
//     against digest), and 401 with WWW-Authenticate: Bearer to anything
//     else. It
//     is a secret apart: no API token, not even an operator's, opens
//     /metrics, and the metrics secret opens no other endpoint. Only its
//     digest is kept.
//   - The audit browser shows every value a tenant or a handler wrote as
//     text (html/template, no JavaScript), and a tenant only its own events
//     and parked events. Its cookie holds a random session id, never the
//     token (the database keeps the SHA-256 of both: a copy of the cookie
//     is no credential of the API), HttpOnly, SameSite Strict. Over TLS
//     (ours, or a proxy's that says so with X-Forwarded-Proto or Forwarded)
//     it is __Host-eventstream_token: Secure, Path=/, no Domain, and the
//     only cookie read; over plain HTTP, where a browser would refuse a
//     Secure cookie, eventstream_token, limited to /ui/. The session's
//     token is checked like a bearer token on every page, so revoking the
//     token ends it; signing out ends the session on the server, signing
//     in again ends the browser's session before starting the next, a
//     token keeps at most Config.MaxSessions (20) live sessions (a sign-in
//     past it ends the oldest), and a session expires after
//     Config.SessionTTL (12h); an expired session opens nothing, and is
//     deleted at its token's next sign-in (which also takes up to 100 of
//     other tokens', skipping rows a purge holds) or, on a started server
//     (Server.Start), within Config.SessionPurgeInterval (15m), though
//     nobody signs in.
//     That purge deletes Config.SessionPurgeBatch (10,000) expired
//     sessions per statement, each statement its own transaction, never
//     waits on a sign-in (it skips the rows one holds), and gives up after
//     30 seconds until the next interval. Close stops what Start started,
//     and New starts nothing. A sign-in or sign-out form posted by another
//     site is refused (403).
//   - A tenant's token is given projection figures over its own events
//     only (Server.forPrincipal): its lag, its parked events; no error
//     text, rate or error count, which count every tenant's events.
//     Positions in the shared log are shown: a tenant reads them anyway in
//     its appends' answers and GET /events.
//   - Every response carries X-Content-Type-Options: nosniff,
//     X-Frame-Options: DENY and a Content-Security-Policy that loads, runs
//     and frames nothing (the browser's pages allow their style sheet).
package server
