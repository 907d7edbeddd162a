package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/eventstore"
)

// A client whose command committed but whose answer was lost (a timeout)
// sends the command again with the same command id. The command now meets
// a state that holds its own events and decides otherwise; the retry must
// still get the original result, and write nothing.

// eachStore runs f over the memory store, and over PostgreSQL with
// missions snapshotted every two events.
func eachStore(t *testing.T, f func(t *testing.T, env *dt.Env)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		f(t, dt.Memory(t, domain.Options{}))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, dt.Postgres(t, domain.Options{SnapshotEvery: 2}, true))
	})
}

// withID is a command meta with a command id of its own, as a client that
// retries sets it.
func withID() aggregates.CommandMeta {
	m := dt.Meta()
	m.ID = uuid.New()
	return m
}

// readyMission creates a mission and records governance's passing verdict
// (v2).
func readyMission(t *testing.T, env *dt.Env) string {
	t.Helper()
	id, ir := uuid.NewString(), "ir-"+uuid.NewString()
	steps := []governance.Step{{ID: "fetch", Action: "http.get", Tier: 0}}
	create := missions.Create{MissionID: id, IRID: ir, Title: "Nightly sync", Steps: steps, CreatedBy: "ops"}
	if _, err := env.Missions.Handle(ctx, dt.Meta(), create); err != nil {
		t.Fatal(err)
	}
	// The verdict a mission records is governance's (as the reactions
	// carry it): governance validates the IR for the mission first.
	if _, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}, MissionID: id}); err != nil {
		t.Fatal(err)
	}
	verdict := missions.RecordValidation{MissionID: id, IRID: ir, Outcome: governance.OutcomePass, MaxTier: 0}
	if _, err := env.Missions.Handle(ctx, dt.Meta(), verdict); err != nil {
		t.Fatal(err)
	}
	return id
}

// sameEvents checks that the retry returned the events the first Handle
// returned, where they are stored.
func sameEvents(t *testing.T, got, want []eventstore.Event) {
	t.Helper()
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("the retry returned %d events, want the %d of the first Handle", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.Version != w.Version || g.Position != w.Position || g.Type != w.Type ||
			!eventstore.JSONEqual(g.Payload, w.Payload) || !g.Timestamp.Equal(w.Timestamp) {
			t.Fatalf("the retry returned event %d\n %s v%d at %s %s %s\nwant\n %s v%d at %s %s %s", i,
				g.ID, g.Version, g.Position, g.Type, g.Payload, w.ID, w.Version, w.Position, w.Type, w.Payload)
		}
	}
}

// snapshotAt returns the version of the mission's snapshot (0: none, or no
// snapshots in this environment).
func snapshotAt(t *testing.T, env *dt.Env, stream string) int64 {
	t.Helper()
	if env.Pool == nil {
		return 0
	}
	var v int64
	err := env.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM aggregate_snapshots WHERE stream = $1`, stream).Scan(&v)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A retried Cancel finds the mission cancelled, by itself: it used to be
// refused with nothing-after-end.
func TestRetriedCancelReturnsTheOriginalResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, env *dt.Env) {
		id := readyMission(t, env)
		cmd, cancel := withID(), missions.Cancel{MissionID: id, Reason: "no longer needed", CancelledBy: "ops"}
		first, err := env.Missions.Handle(ctx, cmd, cancel)
		if err != nil {
			t.Fatal(err)
		}
		before := dt.Head(t, env.Store)
		retry := func() {
			t.Helper()
			again, err := env.Missions.Handle(ctx, cmd, cancel)
			if err != nil {
				t.Fatalf("the retried Cancel failed: %v", err)
			}
			sameEvents(t, again.Events, first.Events)
			if s := again.Aggregate.State; s.Status != missions.StatusCancelled || again.Aggregate.Version != 3 {
				t.Fatalf("the retry's mission is %s at v%d, want cancelled at v3", s.Status, again.Aggregate.Version)
			}
			if after := dt.Head(t, env.Store); after != before {
				t.Fatalf("the retry moved the log from %s to %s", before, after)
			}
		}
		// In PostgreSQL the mission is loaded from its snapshot at v2 and
		// the cancellation after it.
		retry()
		if env.Pool != nil {
			if v := snapshotAt(t, env, "mission-"+id); v != 2 {
				t.Fatalf("snapshot at v%d, want v2", v)
			}
			// A snapshot that holds the cancellation: the retry must find
			// the command's event before the snapshot.
			if err := env.Missions.Repository().TakeSnapshot(ctx, id); err != nil {
				t.Fatal(err)
			}
			if v := snapshotAt(t, env, "mission-"+id); v != 3 {
				t.Fatalf("snapshot at v%d, want v3", v)
			}
			retry()
		}

		// Another Cancel is refused as before.
		_, err = env.Missions.Handle(ctx, withID(), cancel)
		dt.Refused(t, env.Store, before, err, missions.ErrEnded)
	})
}

// A retried Start finds the mission running, with a task created since:
// it used to be refused with mission-state.
func TestRetriedStartReturnsTheOriginalResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, env *dt.Env) {
		id := readyMission(t, env)
		cmd, start := withID(), missions.Start{MissionID: id}
		first, err := env.Missions.Handle(ctx, cmd, start)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Missions.Handle(ctx, dt.Meta(), missions.CreateTask{MissionID: id, TaskID: uuid.NewString(), StepID: "fetch"}); err != nil {
			t.Fatal(err)
		}
		if env.Pool != nil {
			if v := snapshotAt(t, env, "mission-"+id); v != 4 {
				t.Fatalf("snapshot at v%d, want v4 (after the Start at v%d)", v, first.Events[0].Version)
			}
		}
		before := dt.Head(t, env.Store)

		again, err := env.Missions.Handle(ctx, cmd, start)
		if err != nil {
			t.Fatalf("the retried Start failed: %v", err)
		}
		sameEvents(t, again.Events, first.Events)
		if a := again.Aggregate; a.State.Status != missions.StatusRunning || a.Version != 4 || len(a.State.Tasks) != 1 {
			t.Fatalf("the retry's mission is %s at v%d with %d tasks, want running at v4 with 1", a.State.Status, a.Version, len(a.State.Tasks))
		}
		if after := dt.Head(t, env.Store); after != before {
			t.Fatalf("the retry moved the log from %s to %s", before, after)
		}

		// Another Start is refused as before.
		_, err = env.Missions.Handle(ctx, withID(), start)
		dt.Refused(t, env.Store, before, err, missions.ErrState)
	})
}

// A retried ConsumeApproval finds the approval consumed, by itself, and
// decides to record an already_consumed attempt under the ids of its own
// event: the store refused that as a duplicate event id.
func TestRetriedConsumeApprovalReturnsTheOriginalResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, env *dt.Env) {
		id := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", RequestedBy: "planner"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cmd, consume := withID(), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}
		first, err := env.Governance.ConsumeApproval(ctx, cmd, consume)
		if err != nil {
			t.Fatal(err)
		}
		before := dt.Head(t, env.Store)

		again, err := env.Governance.ConsumeApproval(ctx, cmd, consume)
		if err != nil {
			t.Fatalf("the retried ConsumeApproval failed: %v", err)
		}
		sameEvents(t, again.Events, first.Events)
		if s := again.Aggregate.State; !s.Consumed || s.ConsumedBy != "alice" || len(s.Invalid) != 0 {
			t.Fatalf("the retry's approval is %+v, want consumed by alice and no invalid use", s)
		}
		if after := dt.Head(t, env.Store); after != before {
			t.Fatalf("the retry moved the log from %s to %s", before, after)
		}

		// Another use is refused and recorded as before.
		_, err = env.Governance.ConsumeApproval(ctx, withID(), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "mallory"})
		if !errors.Is(err, governance.ErrAlreadyConsumed) {
			t.Fatalf("another use: %v, want %v", err, governance.ErrAlreadyConsumed)
		}
		if got := dt.Types(t, env.Store, "approval-"+id); len(got) != 3 || got[2] != governance.TypeApprovalInvalid {
			t.Fatalf("the approval's events are %v, want the other use recorded last", got)
		}
	})
}

// A refused use that was recorded, retried after the approval was
// consumed by someone else, returns the same refusal and the event it
// recorded the first time, not a duplicate-event error.
func TestRetriedRecordedRefusalReturnsTheOriginalResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, env *dt.Env) {
		id := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", RequestedBy: "planner"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cmd, wrong := withID(), governance.ConsumeApproval{ApprovalID: id, Token: "wrong", ConsumedBy: "bob"}
		first, err := env.Governance.ConsumeApproval(ctx, cmd, wrong)
		if !errors.Is(err, governance.ErrTokenMismatch) || len(first.Events) != 1 {
			t.Fatalf("wrong token: %v and %d events, want %v recorded", err, len(first.Events), governance.ErrTokenMismatch)
		}
		if _, err := env.Governance.ConsumeApproval(ctx, withID(), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
		before := dt.Head(t, env.Store)

		again, err := env.Governance.ConsumeApproval(ctx, cmd, wrong)
		if !errors.Is(err, governance.ErrTokenMismatch) {
			t.Fatalf("the retry: %v, want %v as the first time", err, governance.ErrTokenMismatch)
		}
		sameEvents(t, again.Events, first.Events)
		if after := dt.Head(t, env.Store); after != before {
			t.Fatalf("the retry moved the log from %s to %s", before, after)
		}
	})
}

// One command id given to two different commands is a client's bug: the
// second gets ErrCommandReused, not the first one's result, and nothing
// is written.
func TestCommandIDReusedByAnotherCommand(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, env *dt.Env) {
		id := readyMission(t, env)
		cmd := withID()
		if _, err := env.Missions.Handle(ctx, cmd, missions.Cancel{MissionID: id, Reason: "no longer needed", CancelledBy: "ops"}); err != nil {
			t.Fatal(err)
		}
		before := dt.Head(t, env.Store)
		for _, c := range []aggregates.Command[missions.State]{
			missions.Start{MissionID: id},
			missions.Cancel{MissionID: id, Reason: "another reason", CancelledBy: "ops"},
		} {
			res, err := env.Missions.Handle(ctx, cmd, c)
			var re *aggregates.CommandReusedError
			if !errors.As(err, &re) || !errors.Is(err, aggregates.ErrCommandReused) || re.CommandID != cmd.ID || re.Version != 3 {
				t.Fatalf("%+v with the Cancel's command id: %v, want a *CommandReusedError naming v3", c, err)
			}
			if len(res.Events) != 0 {
				t.Fatalf("%+v with the Cancel's command id returned events %v", c, res.Events)
			}
			if after := dt.Head(t, env.Store); after != before {
				t.Fatalf("the log moved from %s to %s", before, after)
			}
		}

		// The same for a consumed approval presented again, under the same
		// command id, by someone else.
		ap := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: ap, IRID: "ir-1", RequestedBy: "planner"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cmd = withID()
		if _, err := env.Governance.ConsumeApproval(ctx, cmd, governance.ConsumeApproval{ApprovalID: ap, Token: token, ConsumedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
		before = dt.Head(t, env.Store)
		_, err = env.Governance.ConsumeApproval(ctx, cmd, governance.ConsumeApproval{ApprovalID: ap, Token: token, ConsumedBy: "mallory"})
		if !errors.Is(err, aggregates.ErrCommandReused) {
			t.Fatalf("another consumer with alice's command id: %v, want ErrCommandReused", err)
		}
		if after := dt.Head(t, env.Store); after != before {
			t.Fatalf("the log moved from %s to %s", before, after)
		}
	})
}
