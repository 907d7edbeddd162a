package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

func (a *app) demoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the domain's flow end to end and show what an analyst would query",
		Long: `Migrate the database, append validated domain events, show an invalid
event refused with its typed error (event index, JSON pointer, rule) and a
concurrency conflict, read the stream back, and print what an analyst
would query, with the SQL to query it.

Each run uses fresh stream ids, so running it twice is safe. With no
PostgreSQL answering at the default address, it starts a private cluster
under ./.eventstream/pg if the PostgreSQL server programs are installed.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runDemo(cmd.Context())
		},
	}
	return cmd
}

// demoReport is what demo prints with --json.
type demoReport struct {
	Migrations  []migrationResult  `json:"migrations"`
	Tenant      string             `json:"tenant"`
	Correlation string             `json:"correlation_id"`
	Appended    []appendOutput     `json:"appended"`
	Refused     errorReport        `json:"refused"`
	Conflict    errorReport        `json:"conflict"`
	Stream      []eventstore.Event `json:"stream"`
	Queries     []demoQuery        `json:"queries,omitempty"`
}

type demoQuery struct {
	Title string     `json:"title"`
	SQL   string     `json:"sql"`
	Cols  []string   `json:"columns"`
	Rows  [][]string `json:"rows"`
}

// say prints a line of the demo's narrative (not with --json).
func (a *app) say(format string, args ...any) {
	if !a.asJSON {
		a.stdoutf(format+"\n", args...)
	}
}

func (a *app) runDemo(ctx context.Context) error {
	start := time.Now()
	rep := demoReport{Tenant: "acme-learning", Correlation: uuid.NewString()}
	b, err := a.openStore(ctx, storeOptions{connectOptions: connectOptions{devCluster: true, appName: "eventstream-demo"}, devStandIn: true, migrations: &rep.Migrations})
	if err != nil {
		return err
	}
	defer b.Close()

	a.say("== 1. migrate")
	for _, m := range rep.Migrations {
		a.say("   %-28s version %d (%d applied now)", m.Component, m.Version, len(m.Applied))
	}

	courseID := uuid.New()
	stream := "course-" + courseID.String()
	meta := func() eventstore.Meta {
		return eventstore.Meta{SchemaVersion: 1, Producer: "eventstream-demo", TenantID: rep.Tenant, CorrelationID: rep.Correlation}
	}
	ev := func(typ string, version int, payload map[string]any) eventstore.Event {
		p, _ := json.Marshal(payload)
		m := meta()
		m.SchemaVersion = version
		return eventstore.Event{Type: typ, Source: "coursefactory", Payload: p, Meta: m}
	}

	a.say("\n== 2. append validated events to %s", stream)
	batches := [][]eventstore.Event{
		{ev("course.generation.requested", 2, map[string]any{"course_id": courseID, "topic": "Event sourcing with PostgreSQL", "requested_by": "ana@acme.example", "attempt": 1, "language": "en"})},
		{
			ev("course.outline.created", 1, map[string]any{"course_id": courseID, "title": "Event sourcing with PostgreSQL", "lessons": []map[string]any{{"slot": 1, "title": "The log"}, {"slot": 2, "title": "Projections"}}}),
			ev("course.lesson.generated", 1, map[string]any{"course_id": courseID, "slot": 1, "title": "The log", "word_count": 1200}),
			ev("course.lesson.generated", 1, map[string]any{"course_id": courseID, "slot": 2, "title": "Projections", "word_count": 1400}),
			ev("course.generation.completed", 1, map[string]any{"course_id": courseID, "title": "Event sourcing with PostgreSQL", "lesson_count": 2, "attempt": 1}),
		},
	}
	expected := eventstore.NoStream
	for _, batch := range batches {
		res, err := b.Store.Append(ctx, stream, expected, batch...)
		if err != nil {
			return fmt.Errorf("demo append: %w", err)
		}
		for _, e := range res.Events {
			rep.Appended = append(rep.Appended, appendOutputOf(e))
			a.say("   appended %-30s version %d  position %s", e.Type, e.Version, e.Position)
		}
		expected = eventstore.Exact(res.Version())
	}

	a.say("\n== 3. an invalid event is refused, typed, and nothing is written")
	bad := ev("course.generation.requested", 2, map[string]any{"course_id": courseID, "topic": "Retry", "attempt": 2, "language": "English"})
	_, err = b.Store.Append(ctx, stream, eventstore.Any,
		ev("course.lesson.generated", 1, map[string]any{"course_id": courseID, "slot": 3, "title": "Replays"}), bad)
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("demo: the invalid event was not refused as expected (got %v)", err)
	}
	rep.Refused = reportOf(err)
	a.say("   %s", err)
	a.say("   index %d, JSON pointer %s, rule %q -> exit code %d from the CLI", ve.Index, ve.Pointer, ve.Rule, ExitInvalid)

	a.say("\n== 4. a write against a stale version is a concurrency conflict")
	_, err = b.Store.Append(ctx, stream, eventstore.Exact(1),
		ev("course.generation.completed", 1, map[string]any{"course_id": courseID, "title": "Stale", "lesson_count": 1, "attempt": 1}))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) {
		return fmt.Errorf("demo: the stale write was not refused as expected (got %v)", err)
	}
	rep.Conflict = reportOf(err)
	a.say("   %s -> exit code %d from the CLI", err, ExitConflict)

	a.say("\n== 5. read the stream back")
	events, err := b.Store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		return err
	}
	rep.Stream = events
	if !a.asJSON {
		t := a.newTable("   VERSION", "POSITION", "TYPE", "SCHEMA", "TENANT", "ID")
		for _, e := range events {
			t.row(fmt.Sprintf("   %d", e.Version), e.Position, e.Type, fmt.Sprintf("v%d", e.Meta.SchemaVersion), e.Meta.TenantID, e.ID)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}

	qs, err := a.demoQueries(ctx, b, rep.Tenant, rep.Correlation)
	if err != nil {
		return err
	}
	rep.Queries = qs
	if a.asJSON {
		return a.printJSON(rep)
	}
	a.say("\nDone in %s. Next: eventstream read %s", time.Since(start).Round(time.Millisecond), stream)
	return nil
}

// demoQueries runs what an analyst would query, with the SQL, and prints
// it. Until the read models land it queries the log itself.
func (a *app) demoQueries(ctx context.Context, b *backend, tenant, correlation string) ([]demoQuery, error) {
	if b.PG == nil {
		return nil, nil
	}
	a.say("\n== 6. what an analyst would query (psql %s)", redactURL(b.DB.URL))
	q := demoQuery{
		Title: "Events of this run by type, straight from the log",
		SQL: `SELECT type, schema_version AS schema, count(*) AS events
FROM events WHERE tenant_id = $1 AND correlation_id = $2
GROUP BY 1, 2 ORDER BY 1`,
	}
	if err := a.runQuery(ctx, b.DB, &q, tenant, correlation); err != nil {
		return nil, err
	}
	return []demoQuery{q}, nil
}

// runQuery runs q.SQL, keeps its rows as text and prints them.
func (a *app) runQuery(ctx context.Context, db *database, q *demoQuery, args ...any) error {
	rows, err := db.Pool.Query(ctx, q.SQL, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", q.Title, err)
	}
	defer rows.Close()
	q.Cols = nil
	for _, f := range rows.FieldDescriptions() {
		q.Cols = append(q.Cols, f.Name)
	}
	q.Rows = [][]string{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = textOf(v)
		}
		q.Rows = append(q.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", q.Title, err)
	}
	if a.asJSON {
		return nil
	}
	a.say("\n   -- %s", q.Title)
	for _, line := range splitLines(q.SQL) {
		a.say("   %s", line)
	}
	hdr := make([]any, len(q.Cols))
	for i, c := range q.Cols {
		hdr[i] = c
	}
	if len(hdr) > 0 {
		hdr[0] = "   " + q.Cols[0]
	}
	t := a.newTable(hdr...)
	for _, r := range q.Rows {
		cols := make([]any, len(r))
		for i, c := range r {
			cols[i] = c
		}
		if len(cols) > 0 {
			cols[0] = "   " + r[0]
		}
		t.row(cols...)
	}
	return t.flush()
}
