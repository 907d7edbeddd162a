package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

// domainOver builds the four modules over the test server's store, as
// serve does.
func (e *env) domainOver() *domain.Services {
	e.t.Helper()
	reg, err := domain.NewRegistry(schemas.MustDefault())
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := domain.New(e.store, reg, domain.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// streamLen is the number of events in stream (0 when it does not exist).
func (e *env) streamLen(stream string) int {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), stream, 1, 0)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		e.t.Fatal(err)
	}
	return len(evs)
}

// wantModuleStream checks a refusal of a raw append into a module's stream:
// 403, kind module_stream, naming the module to send commands to.
func wantModuleStream(t *testing.T, r response, module string) {
	t.Helper()
	if r.code != 403 {
		t.Fatalf("raw append into a module's stream: %d %s, want 403", r.code, r.body)
	}
	var got struct {
		Kind, Error, Module, Stream string
		EventIDs                    []string `json:"event_ids"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("not JSON: %s", r.body)
	}
	if got.Kind != "module_stream" || got.Module != module || !strings.Contains(got.Error, module) || len(got.EventIDs) != 0 {
		t.Fatalf("refusal %s: want kind module_stream naming module %s, without event ids", r.body, module)
	}
}

// TestForgedMissionStartIsRefused: a tenant appending mission.started raw
// into its own mission's stream would start a tier-2 mission that has no
// approval, skipping every check of Start. The API refuses it (403,
// module_stream) and writes nothing: the mission is still created, not
// running.
func TestForgedMissionStartIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	svc := e.domainOver()
	ctx := context.Background()
	mission := uuid.NewString()
	meta := aggregates.CommandMeta{TenantID: "acme", CorrelationID: "c-1"}
	if _, err := svc.Missions.Handle(ctx, meta, missions.Create{MissionID: mission, IRID: "ir-pay", Title: "Pay the invoices",
		Steps: []governance.Step{{ID: "pay", Action: "payments.send", Tier: 2}}, CreatedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	stream := svc.Missions.Repository().Stream(mission)
	before := e.streamLen(stream)
	forged := fmt.Sprintf(`{"type":"mission.started","payload":{"mission_id":%q,"ir_id":"ir-pay"}}`, mission)
	wantModuleStream(t, e.do("POST", "/streams/"+stream+"/events", acmeToken, forged), "aggregates/missions")
	if n := e.streamLen(stream); n != before {
		t.Fatalf("the refused append wrote %d events", n-before)
	}
	// Reading the stream is as before: its tenant's.
	if r := e.must(200, "GET", "/streams/"+stream, acmeToken, ""); !strings.Contains(r.body, `"mission.created"`) || strings.Contains(r.body, "mission.started") {
		t.Fatalf("the mission's stream reads %s", r.body)
	}
	e.must(404, "GET", "/streams/"+stream, globexToken, "")
	a, err := svc.Missions.Load(ctx, mission)
	if err != nil {
		t.Fatal(err)
	}
	if a.State.Status != missions.StatusCreated {
		t.Fatalf("the mission is %s after a refused forgery, want created", a.State.Status)
	}
}

// TestRawAppendsIntoModuleStreamsAreRefused: every stream category a
// module owns refuses raw appends of the events its module writes (the
// examples of the review: a verdict, a consumed approval, a task, a
// course request, a publication, a view), single and batched, into a
// stream that exists or not, for a tenant's token and an operator's
// alike. Nothing is written.
func TestRawAppendsIntoModuleStreamsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	id := uuid.NewString()
	steps := `[{"step_id":"pay","action":"payments.send","tier":2}]`
	sha := strings.Repeat("a", 64)
	cases := []struct {
		stream, module, typ, payload string
	}{
		{"mission-" + id, "aggregates/missions", "mission.started", fmt.Sprintf(`{"mission_id":%q,"ir_id":"ir-1"}`, id)},
		{"mission-" + id, "aggregates/missions", "mission.approval_granted", fmt.Sprintf(`{"mission_id":%q,"ir_id":"ir-1","approval_id":%q}`, id, id)},
		{"mission-" + id, "aggregates/missions", "mission.task.created", fmt.Sprintf(`{"mission_id":%q,"task_id":%q,"step_id":"pay","action":"payments.send"}`, id, id)},
		{"ir-ir-1", "aggregates/governance", "ir.validated_pass", fmt.Sprintf(`{"ir_id":"ir-1","ir_sha256":%q,"mission_id":%q,"steps":%s,"max_tier":0}`, sha, id, steps)},
		{"approval-" + id, "aggregates/governance", "ir.approval_consumed", fmt.Sprintf(`{"approval_id":%q,"ir_id":"ir-1","mission_id":%q}`, id, id)},
		{"course-" + id, "aggregates/coursefactory", "course.generation.requested", fmt.Sprintf(`{"course_id":%q,"topic":"Go","attempt":1,"language":"en"}`, id)},
		{"distribution-" + id, "aggregates/distribution", "distribution.published", fmt.Sprintf(`{"distribution_id":%q,"course_id":%q,"version":"1.0.0"}`, id, id)},
		{"distribution-" + id, "aggregates/distribution", "distribution.viewed", fmt.Sprintf(`{"distribution_id":%q,"course_id":%q}`, id, id)},
	}
	for _, c := range cases {
		for _, who := range []struct{ token, meta string }{{acmeToken, ""}, {operatorToken, `,"meta":{"tenant_id":"acme"}`}} {
			one := fmt.Sprintf(`{"type":%q,"payload":%s%s}`, c.typ, c.payload, who.meta)
			for _, body := range []string{one, `{"events":[` + one + `]}`} {
				before := e.logSize()
				r := e.do("POST", "/streams/"+url.PathEscape(c.stream)+"/events", who.token, body)
				t.Run(c.typ, func(t *testing.T) { wantModuleStream(t, r, c.module) })
				if n := e.logSize(); n != before {
					t.Fatalf("%s into %s: the refused append wrote %d events", c.typ, c.stream, n-before)
				}
			}
		}
	}
}

// TestModuleStreamRefusalRevealsNoOwner: the refusal comes before the
// stream's owner is looked at, so another tenant's module stream answers
// exactly as one's own and as one that does not exist: it tells nobody
// whether, or whose, the stream is. The operator's token is refused on
// the existing stream too, and none of the refusals writes anything.
func TestModuleStreamRefusalRevealsNoOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	svc := e.domainOver()
	mission := uuid.NewString()
	if _, err := svc.Missions.Handle(context.Background(), aggregates.CommandMeta{TenantID: "acme"}, missions.Create{MissionID: mission, IRID: "ir-1",
		Title: "t", Steps: []governance.Step{{ID: "s", Action: "a.b", Tier: 0}}}); err != nil {
		t.Fatal(err)
	}
	body := func(m string) string {
		return fmt.Sprintf(`{"type":"mission.started","payload":{"mission_id":%q,"ir_id":"ir-1"}}`, m)
	}
	before := e.logSize()
	acmes := e.do("POST", "/streams/mission-"+mission+"/events", globexToken, body(mission))
	wantModuleStream(t, acmes, "aggregates/missions")
	none := uuid.NewString()
	absent := e.do("POST", "/streams/mission-"+none+"/events", globexToken, body(none))
	wantModuleStream(t, absent, "aggregates/missions")
	if strings.ReplaceAll(absent.body, none, mission) != acmes.body {
		t.Fatalf("another tenant's mission stream answers\n%s\nand one that does not exist\n%s", acmes.body, absent.body)
	}
	// The operator's token, on the stream that exists, is refused alike.
	wantModuleStream(t, e.do("POST", "/streams/mission-"+mission+"/events", operatorToken,
		strings.TrimSuffix(body(mission), "}")+`,"meta":{"tenant_id":"acme"}}`), "aggregates/missions")
	if n := e.logSize(); n != before {
		t.Fatalf("the refused appends wrote %d events", n-before)
	}
}

// TestRawAppendsOutsideModuleStreamsStillWork: the rule is the stream's
// category, not the type: events producers send raw (views and enrollment
// clicks of a web front end into its own analytics stream, a request into
// an orders stream) are appended as before, and so are streams whose names
// only look like a module's.
func TestRawAppendsOutsideModuleStreamsStillWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	d, c := uuid.NewString(), uuid.NewString()
	e.must(201, "POST", "/streams/web-analytics-acme/events", acmeToken, fmt.Sprintf(`{"events":[
		{"type":"distribution.viewed","payload":{"distribution_id":%q,"course_id":%q,"visitor_id":"v1"}},
		{"type":"distribution.enrollment_clicked","payload":{"distribution_id":%q,"course_id":%q,"visitor_id":"v1"}}]}`, d, c, d, c))
	for _, stream := range []string{"acme-orders", "missions-1", "mission", "Mission-1", "my-mission-1", "course_1", "irs-1", "approvals"} {
		e.must(201, "POST", "/streams/"+url.PathEscape(stream)+"/events", acmeToken, requestedEvent(""))
	}
	e.must(201, "POST", "/streams/ops-1/events", operatorToken, requestedEvent("globex"))
	if n := e.logSize(); n != 11 {
		t.Fatalf("the log has %d events, want 11", n)
	}
}
