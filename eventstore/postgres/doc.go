// Package postgres is the PostgreSQL backend of eventstore.Store, on pgx v5.
//
// Ordering: every append transaction takes one transaction-scoped advisory
// lock before it assigns positions, so appends commit one after another and
// positions are a gapless counter in commit order. A reader that has seen
// position N can never later find an event below N: such an event would have
// had to commit before N's transaction took the lock.
//
// Throughput: concurrent Append calls are coalesced by committer
// goroutines into shared transactions (group commit). Each append keeps its
// own expected-version check and result; one conflicting append does not
// fail the others. A group is one statement: the server-side function
// eventstream_append takes the lock, checks the expected versions, inserts
// every row and notifies, and the statement's implicit transaction commits.
//
// Live subscriptions are woken by LISTEN/NOTIFY (and, in-process, directly
// by the committer), with a slow fallback poll for lost notifications.
//
// Sessions: the store needs read committed transactions and, where results
// arrive as text, DateStyle ISO. Open sets both (and TCP keepalives) in
// the startup packet; for a pool given to New, see SetSessionDefaults.
package postgres
