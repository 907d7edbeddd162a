package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/aggregates"
	cf "github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

func (a *app) demoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the domain's flow end to end and show what an analyst would query",
		Long: `Run the whole flow on a real store, in a few seconds:

  1. migrate the log, the snapshots and every read model
  2. a course is requested, generated and completed (course_factory)
  3. reactions distribute it and deploy it to staging; it is published,
     viewed and clicked (course_distribution)
  4. a mission's IR is validated and escalated, an approval is created and
     consumed, and the mission runs its tasks (ir_governance, missions)
  5. a tampered DAG and a forged approval token raise security alerts
  6. an invalid event is refused with its typed error (event index, JSON
     pointer, rule) and a stale write is a concurrency conflict
  7. the projections catch up: audit log, analytics, alerts, catalog
  8. what an analyst would query, with the SQL to query it

Each run uses fresh ids, so running it twice is safe. With no PostgreSQL
answering at the default address, it starts a private cluster under
./.eventstream/pg if the PostgreSQL server programs are installed. With
--store esdb and no --eventstore-url it runs on the in-process EventStoreDB
protocol stand-in; with an ephemeral log (memory, stand-in) the read models
go to a fresh PostgreSQL schema, named in the output.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runDemo(cmd.Context())
		},
	}
	return cmd
}

// demoReport is what demo prints with --json.
type demoReport struct {
	Store       string             `json:"store"`
	Schema      string             `json:"schema,omitempty"`
	Migrations  []migrationResult  `json:"migrations"`
	Tenant      string             `json:"tenant"`
	Correlation string             `json:"correlation_id"`
	CourseID    string             `json:"course_id"`
	MissionID   string             `json:"mission_id"`
	IRID        string             `json:"ir_id"`
	Flow        []demoEvent        `json:"flow"`
	Refused     errorReport        `json:"refused"`
	Conflict    errorReport        `json:"conflict"`
	Stream      []eventstore.Event `json:"course_stream"`
	Projections []projections.Lag  `json:"projections"`
	Queries     []demoQuery        `json:"queries"`
	Seconds     float64            `json:"seconds"`
}

type demoEvent struct {
	Stream   string              `json:"stream"`
	Version  int64               `json:"version"`
	Position eventstore.Position `json:"position"`
	Type     string              `json:"type"`
	By       string              `json:"by"`
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

// demo holds one run's state.
type demo struct {
	a    *app
	b    *backend
	dom  *domainParts
	rt   *projections.Runtime
	rep  *demoReport
	meta aggregates.CommandMeta
	seen eventstore.Position
}

func (a *app) runDemo(ctx context.Context) error {
	start := time.Now()
	a.log = a.quietLog()
	rep := &demoReport{Tenant: "acme-learning", Correlation: uuid.NewString(), CourseID: uuid.NewString(), MissionID: uuid.NewString(), IRID: uuid.NewString()}
	kind, err := a.storeKindChecked()
	if err != nil {
		return err
	}
	opts := storeOptions{connectOptions: connectOptions{devCluster: true, appName: "eventstream-demo"}, devStandIn: true, migrations: &rep.Migrations}
	if kind == storeMemory || (kind == storeESDB && a.eventstoreURLOrEnv() == "") {
		// The log starts empty on every run, so the read models' checkpoints
		// must too.
		opts.freshSchema = "demo_" + time.Now().UTC().Format("20060102_150405") + "_" + rep.CourseID[:4]
	}
	b, err := a.openStore(ctx, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	rep.Store = b.Kind
	if opts.freshSchema != "" && b.DB != nil {
		// openDB may have named it after the URL's schema.
		if err := b.DB.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&rep.Schema); err != nil {
			return fmt.Errorf("read the demo's schema: %w", err)
		}
	}
	dom, err := a.newDomain(b.Store, b.Registry)
	if err != nil {
		return err
	}
	rt, err := a.newRuntime(b, dom, runtimeOptions{})
	if err != nil {
		return err
	}
	d := &demo{a: a, b: b, dom: dom, rt: rt, rep: rep,
		meta: aggregates.CommandMeta{TenantID: rep.Tenant, CorrelationID: rep.Correlation, Producer: "eventstream-demo"}}
	if d.seen, err = b.Store.Head(ctx); err != nil {
		return err
	}

	a.say("== 1. migrate (log: %s)", b.Kind)
	if rep.Schema != "" {
		a.say("   read models in the fresh schema %s (the %s log starts empty on every run)", rep.Schema, b.Kind)
	}
	for _, m := range rep.Migrations {
		a.say("   %-22s version %d (%d applied now)", m.Component, m.Version, len(m.Applied))
	}
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"2. a course is requested, generated and completed (course_factory)", d.course},
		{"3. reactions distribute it and deploy it to staging; it is published, viewed, clicked", d.distribute},
		{"4. a mission's IR is validated, escalated and approved; the mission runs", d.mission},
		{"5. tampering: a changed DAG and a forged approval token", d.tampering},
		{"6. an invalid event is refused, typed, and nothing is written", d.refusals},
		{"7. the projections catch up", d.project},
		{"8. what an analyst would query", d.queries},
	}
	for _, s := range steps {
		a.say("\n== %s", s.title)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("demo step %s: %w", s.title[:2], err)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if a.asJSON {
		return a.printJSON(rep)
	}
	took := time.Since(start).Round(time.Millisecond)
	if rep.Schema != "" {
		// The log lived in this process and is gone, and the read models
		// are in a schema of their own: the course's stream cannot be
		// read, and the projections' status is another schema's.
		a.say("\nDone in %s. The %s log ended with this run (its read models stay in schema %s). Next:", took, b.Kind, rep.Schema)
		a.say("   eventstream demo                     # the same on the PostgreSQL log, which stays: its streams can then be read")
		a.say("   eventstream serve --dev              # the HTTP API and the audit browser at /ui/")
		return nil
	}
	store := ""
	if b.Kind != storePostgres {
		store = "--store " + b.Kind + " "
	}
	a.say("\nDone in %s. Next:", took)
	a.say("   eventstream %sread course-%s        # the course's stream", store, rep.CourseID)
	a.say("   eventstream %sprojections status      # lag, parked events", store)
	a.say("   eventstream %sserve --dev              # the HTTP API and the audit browser at /ui/", store)
	return nil
}

// show prints the log's events since the last call.
func (d *demo) show(ctx context.Context, by string) error {
	// From is inclusive; the event at d.seen is skipped below. (No
	// position arithmetic: EventStoreDB positions are not consecutive.)
	opts := eventstore.ReadAllOptions{From: d.seen}
	return readAll(ctx, d.b.Store, opts, 0, func(e eventstore.Event) error {
		if e.Position.Compare(d.seen) <= 0 {
			return nil
		}
		d.seen = e.Position
		if e.Meta.CorrelationID != d.rep.Correlation {
			return nil // another run's or another writer's event
		}
		who := by
		if strings.HasPrefix(e.Meta.Producer, "reaction/") {
			who = e.Meta.Producer
		}
		d.rep.Flow = append(d.rep.Flow, demoEvent{Stream: e.Stream, Version: e.Version, Position: e.Position, Type: e.Type, By: who})
		d.a.say("   %-5s %-32s %-50s v%-2d %s", e.Position, e.Type, clip(e.Stream, 50), e.Version, who)
		return nil
	})
}

func (d *demo) course(ctx context.Context) error {
	id := d.rep.CourseID
	lessons := []cf.LessonSlot{{Slot: 1, Title: "The append-only log"}, {Slot: 2, Title: "Projections and read models"}, {Slot: 3, Title: "Replays without fear"}}
	cmds := []aggregates.Command[cf.State]{
		cf.RequestGeneration{CourseID: id, Topic: "Event sourcing with PostgreSQL", RequestedBy: "ana@acme.example", Language: "en"},
		cf.StartOutlining{CourseID: id},
		cf.CreateOutline{CourseID: id, Title: "Event sourcing with PostgreSQL", Lessons: lessons},
	}
	for _, l := range lessons {
		cmds = append(cmds, cf.GenerateLesson{CourseID: id, Slot: l.Slot, Title: l.Title, WordCount: 1200 + 100*l.Slot})
	}
	cmds = append(cmds,
		cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 8},
		cf.CreateLandingPage{CourseID: id, Headline: "Learn event sourcing in an afternoon", Slug: "event-sourcing-" + id[:8]},
		cf.SubmitForReview{CourseID: id},
		cf.Complete{CourseID: id},
	)
	for _, c := range cmds {
		if _, err := d.dom.Services.Courses.Handle(ctx, d.meta, c); err != nil {
			return fmt.Errorf("%T: %w", c, err)
		}
	}
	return d.show(ctx, "command")
}

// react runs the reactions until they have handled everything, their own
// appends included.
func (d *demo) react(ctx context.Context) error {
	return d.settle(ctx, reactionsName)
}

func (d *demo) distribute(ctx context.Context) error {
	if err := d.react(ctx); err != nil {
		return err
	}
	dist := distribution.IDForCourse(d.rep.CourseID, distribution.ChannelWeb)
	cmds := []aggregates.Command[distribution.State]{distribution.Publish{DistributionID: dist}}
	for i := range 3 {
		cmds = append(cmds, distribution.RecordView{DistributionID: dist, VisitorID: fmt.Sprintf("visitor-%d", i+1), Referrer: "newsletter"})
	}
	cmds = append(cmds, distribution.RecordEnrollmentClick{DistributionID: dist, VisitorID: "visitor-2"})
	for _, c := range cmds {
		if _, err := d.dom.Services.Distributions.Handle(ctx, d.meta, c); err != nil {
			return fmt.Errorf("%T: %w", c, err)
		}
	}
	return d.show(ctx, "command")
}

func (d *demo) missionSteps() []governance.Step {
	return []governance.Step{
		{ID: "fetch", Action: "http.get", Tier: 0},
		{ID: "summarise", Action: "llm.summarise", Tier: 1},
		{ID: "publish", Action: "cms.publish", Tier: 2},
	}
}

func (d *demo) mission(ctx context.Context) error {
	m, ir := d.rep.MissionID, d.rep.IRID
	if _, err := d.dom.Services.Missions.Handle(ctx, d.meta, missions.Create{MissionID: m, IRID: ir, Title: "Publish the course summary", Steps: d.missionSteps(), CreatedBy: "ops@acme.example"}); err != nil {
		return err
	}
	if err := d.react(ctx); err != nil { // validates the IR: tier 2 escalates
		return err
	}
	approval := uuid.NewString()
	token, _, err := d.dom.Services.Governance.CreateApproval(ctx, d.meta, governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: m, RequestedBy: "ops@acme.example"}, time.Hour)
	if err != nil {
		return err
	}
	if _, err := d.dom.Services.Governance.ConsumeApproval(ctx, d.meta, governance.ConsumeApproval{ApprovalID: approval, Token: token, ConsumedBy: "cto@acme.example"}); err != nil {
		return err
	}
	if err := d.react(ctx); err != nil { // grants the mission its approval
		return err
	}
	cmds := []aggregates.Command[missions.State]{missions.Start{MissionID: m}}
	var tasks []string
	for _, s := range d.missionSteps() {
		t := uuid.NewString()
		tasks = append(tasks, t)
		cmds = append(cmds, missions.CreateTask{MissionID: m, TaskID: t, StepID: s.ID})
	}
	for _, t := range tasks {
		cmds = append(cmds, missions.CompleteTask{MissionID: m, TaskID: t})
	}
	cmds = append(cmds, missions.Complete{MissionID: m})
	for _, c := range cmds {
		if _, err := d.dom.Services.Missions.Handle(ctx, d.meta, c); err != nil {
			return fmt.Errorf("%T: %w", c, err)
		}
	}
	return d.show(ctx, "command")
}

func (d *demo) tampering(ctx context.Context) error {
	ir := d.rep.IRID
	tampered := d.missionSteps()
	tampered[2].Action = "payments.send" // the compiled DAG does something else
	if _, err := d.dom.Services.Governance.CheckDAG(ctx, d.meta, governance.CheckDAG{IRID: ir, Nodes: tampered}); err != nil {
		return fmt.Errorf("check DAG: %w", err)
	}
	approval := uuid.NewString()
	if _, _, err := d.dom.Services.Governance.CreateApproval(ctx, d.meta, governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: d.rep.MissionID, RequestedBy: "ops@acme.example"}, time.Hour); err != nil {
		return err
	}
	_, err := d.dom.Services.Governance.ConsumeApproval(ctx, d.meta, governance.ConsumeApproval{ApprovalID: approval, Token: "forged-token", ConsumedBy: "mallory@evil.example"})
	if err == nil {
		return errors.New("a forged approval token was accepted")
	}
	d.a.say("   consuming with a forged token is refused (%v) and recorded:", err)
	return d.show(ctx, "command")
}

func (d *demo) refusals(ctx context.Context) error {
	stream := "course-" + d.rep.CourseID
	ev := func(typ string, version int, payload map[string]any) eventstore.Event {
		p, _ := json.Marshal(payload)
		return eventstore.Event{Type: typ, Source: cf.Source, Payload: p,
			Meta: eventstore.Meta{SchemaVersion: version, Producer: "eventstream-demo", TenantID: d.rep.Tenant, CorrelationID: d.rep.Correlation}}
	}
	before, err := d.b.Store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		return err
	}
	_, err = d.b.Store.Append(ctx, stream, eventstore.Any,
		ev(cf.TypeGenerationRequested, 2, map[string]any{"course_id": d.rep.CourseID, "topic": "Retry", "attempt": 2, "language": "en"}),
		ev(cf.TypeGenerationRequested, 2, map[string]any{"course_id": d.rep.CourseID, "topic": "Retry", "attempt": 2, "language": "English"}))
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("the invalid event was not refused as expected (got %v)", err)
	}
	d.rep.Refused = reportOf(err)
	d.a.say("   append [valid, invalid] to %s:", stream)
	d.a.say("   %s", err)
	d.a.say("   -> *eventstore.ValidationError{Index: %d, Pointer: %q, Rule: %q}; the CLI exits %d", ve.Index, ve.Pointer, ve.Rule, ExitInvalid)

	_, err = d.b.Store.Append(ctx, stream, eventstore.Exact(1),
		ev(cf.TypeGenerationRequested, 2, map[string]any{"course_id": d.rep.CourseID, "topic": "Stale", "attempt": 2, "language": "en"}))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) {
		return fmt.Errorf("the stale write was not refused as expected (got %v)", err)
	}
	d.rep.Conflict = reportOf(err)
	d.a.say("   append expecting version 1: %s -> the CLI exits %d", err, ExitConflict)
	after, err := d.b.Store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		return err
	}
	if len(after) != len(before) {
		return fmt.Errorf("refused appends wrote %d events", len(after)-len(before))
	}
	d.rep.Stream = after
	d.a.say("   the stream still holds %d events, the last at version %d", len(after), after[len(after)-1].Version)
	return nil
}

func (d *demo) project(ctx context.Context) error {
	if err := d.react(ctx); err != nil {
		return err
	}
	for _, n := range d.rt.Names() {
		if err := d.settle(ctx, n); err != nil {
			return err
		}
	}
	lags, err := d.rt.Lag(ctx)
	if err != nil {
		return err
	}
	d.rep.Projections = lags
	if !d.a.asJSON {
		return d.a.printLagTable(lags, "   ")
	}
	return nil
}

// settle brings one projection to the head (catchUpToHead). When another
// process (serve) runs it, the demo waits 30 s at most for that one.
func (d *demo) settle(ctx context.Context, name string) error {
	_, err := catchUpToHead(ctx, d.rt, name, catchUpOptions{stop: stopAtHead, busyWait: 30 * time.Second})
	return err
}

func (d *demo) queries(ctx context.Context) error {
	if !d.a.asJSON {
		target := redactURL(d.b.DB.URL)
		if d.rep.Schema != "" {
			target += " (SET search_path TO " + d.rep.Schema + ")"
		}
		d.a.say("   psql %s", target)
	}
	qs := []struct {
		q    demoQuery
		args []any
	}{
		{demoQuery{Title: "The course catalog: one row per course (the table to query first)", SQL: `SELECT title, workflow_state, lesson_count, publication_status, views, enrollment_clicks, staging_url
FROM course_catalog WHERE tenant_id = $1 AND course_id = $2`}, []any{d.rep.Tenant, d.rep.CourseID}},
		{demoQuery{Title: "Security alerts: tampering is critical", SQL: `SELECT severity, alert_type, reason, occurrences, ir_id
FROM security_alerts WHERE tenant_id = $1 AND last_correlation_id = $2
ORDER BY severity = 'critical' DESC, last_seen DESC`}, []any{d.rep.Tenant, d.rep.Correlation}},
		{demoQuery{Title: "Course generation success rate per day", SQL: `SELECT day, requested, completed, failed, success_rate
FROM analytics_generation_daily WHERE tenant_id = $1 ORDER BY day DESC LIMIT 3`}, []any{d.rep.Tenant}},
		{demoQuery{Title: "Follow one correlation id across streams in the audit log", SQL: `SELECT split_part(stream, '-', 1) AS aggregate, count(*) AS events, min(position) AS first, max(position) AS last
FROM audit_events WHERE tenant_id = $1 AND correlation_id = $2
GROUP BY 1 ORDER BY first`}, []any{d.rep.Tenant, d.rep.Correlation}},
	}
	for _, x := range qs {
		q := x.q
		if err := d.a.runQuery(ctx, d.b.DB, &q, x.args...); err != nil {
			return err
		}
		d.rep.Queries = append(d.rep.Queries, q)
	}
	return nil
}

// runQuery runs q.SQL, keeps its rows as text and prints them.
func (a *app) runQuery(ctx context.Context, db *database, q *demoQuery, args ...any) error {
	rows, err := db.Pool.Query(ctx, q.SQL, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", q.Title, err)
	}
	defer rows.Close()
	q.Cols = nil
	fields := rows.FieldDescriptions()
	for _, f := range fields {
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
			row[i] = textOf(v, fields[i].DataTypeOID)
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
	hdr[0] = "   | " + q.Cols[0]
	t := a.newTable(hdr...)
	for _, r := range q.Rows {
		cols := make([]any, len(r))
		for i, c := range r {
			cols[i] = c
		}
		cols[0] = "   | " + r[0]
		t.row(cols...)
	}
	return t.flush()
}
