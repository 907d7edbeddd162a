// Package cli implements the eventstream command: one file per
// subcommand, built on cobra. Main runs it and returns the process exit
// code; cmd/eventstream is a thin wrapper around it.
//
// What it promises:
//   - Exit codes: 0 success, 1 failure, 2 usage error, 3 input refused by
//     validation, 4 conflict with what is stored (wrong expected version,
//     or an event id stored with other content), 75 the
//     database or EventStoreDB unavailable (try again later), 130
//     interrupted.
//   - User errors are one plain line on stderr (a JSON object with --json),
//     never a stack trace, and never carry a database password.
//   - Every command that prints data prints a human table by default and
//     JSON (one object per line for event lists) with --json.
//   - Input that is refused writes nothing: appends are atomic per stream.
package cli
