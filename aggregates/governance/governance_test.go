package governance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

var ctx = context.Background()

func tenant(t string) aggregates.CommandMeta { return aggregates.CommandMeta{TenantID: t} }

func newApproval(t *testing.T, env *dt.Env) (id, token string) {
	t.Helper()
	id = uuid.NewString()
	token, res, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", MissionID: uuid.NewString(), RequestedBy: "planner"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if token == "" || len(res.Events) != 1 {
		t.Fatalf("create returned token %q and %d events", token, len(res.Events))
	}
	return id, token
}

func lastEvent(t *testing.T, env *dt.Env, stream string) eventstore.Event {
	t.Helper()
	evs, err := env.Store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs[len(evs)-1]
}

func TestApprovalStoresOnlyTheTokenHash(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, token := newApproval(t, env)
	e := lastEvent(t, env, "approval-"+id)
	if e.Type != governance.TypeApprovalCreated {
		t.Fatalf("event %s", e.Type)
	}
	if strings.Contains(string(e.Payload), token) {
		t.Fatal("the token is stored in clear")
	}
	var p governance.ApprovalCreated
	_ = json.Unmarshal(e.Payload, &p)
	if p.TokenSHA256 != governance.HashToken(token) || !p.ExpiresAt.Equal(env.Clock.T.Add(time.Hour)) {
		t.Fatalf("payload %s: want the token's hash and an expiry one hour after now", e.Payload)
	}
}

func TestApprovalConsumedOnce(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, token := newApproval(t, env)
	res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events[0].Type != governance.TypeApprovalConsumed || !res.Aggregate.State.Consumed {
		t.Fatalf("consume wrote %s", res.Events[0].Type)
	}
	// A second use is refused and recorded.
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "mallory"})
	checkInvalid(t, env, err, id, governance.ErrAlreadyConsumed, governance.ReasonAlreadyConsumed, "t1")
}

// checkInvalid checks a refused use returned the rule and recorded
// ir.approval_invalid with the reason for the given tenant.
func checkInvalid(t *testing.T, env *dt.Env, err error, id string, rule error, reason governance.InvalidReason, forTenant string) governance.ApprovalInvalid {
	t.Helper()
	if !errors.Is(err, rule) {
		t.Fatalf("error = %v, want %v", err, rule)
	}
	e := lastEvent(t, env, "approval-"+id)
	var p governance.ApprovalInvalid
	_ = json.Unmarshal(e.Payload, &p)
	if e.Type != governance.TypeApprovalInvalid || p.Reason != reason || e.Meta.TenantID != forTenant {
		t.Fatalf("recorded %s %s for tenant %s, want %s %s for %s", e.Type, e.Payload, e.Meta.TenantID, governance.TypeApprovalInvalid, reason, forTenant)
	}
	return p
}

func TestApprovalInvalidReasons(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})

	t.Run("unknown approval", func(t *testing.T) {
		id := uuid.NewString()
		_, err := env.Governance.ConsumeApproval(ctx, tenant("t9"), governance.ConsumeApproval{ApprovalID: id, Token: "x"})
		p := checkInvalid(t, env, err, id, governance.ErrUnknownApproval, governance.ReasonUnknownApproval, "t9")
		if p.IRID != "" {
			t.Fatalf("unknown approval names IR %q", p.IRID)
		}
		// The probe does not make the approval exist.
		if _, err := env.Governance.ApprovalStatus(ctx, id); !errors.Is(err, aggregates.ErrNotFound) {
			t.Fatalf("ApprovalStatus = %v, want not found", err)
		}
	})
	t.Run("token mismatch", func(t *testing.T) {
		id, _ := newApproval(t, env)
		_, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: "guess"})
		checkInvalid(t, env, err, id, governance.ErrTokenMismatch, governance.ReasonTokenMismatch, "t1")
		if st, _ := env.Governance.ApprovalStatus(ctx, id); st.Consumed {
			t.Fatal("a wrong token consumed the approval")
		}
	})
	t.Run("tenant mismatch", func(t *testing.T) {
		id, token := newApproval(t, env)
		_, err := env.Governance.ConsumeApproval(ctx, tenant("t2"), governance.ConsumeApproval{ApprovalID: id, Token: token})
		p := checkInvalid(t, env, err, id, governance.ErrUnknownApproval, governance.ReasonTenantMismatch, "t1")
		if p.PresentedTenantID != "t2" {
			t.Fatalf("presented tenant %q, want t2", p.PresentedTenantID)
		}
	})
}

func TestApprovalExpiryWithAnInjectedClock(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, token := newApproval(t, env)

	// Not yet: the sweeper is refused.
	before := dt.Head(t, env.Store)
	_, err := env.Governance.ExpireApproval(ctx, tenant("t1"), id)
	dt.Refused(t, env.Store, before, err, governance.ErrNotYetExpired)

	env.Clock.Advance(time.Hour) // exactly at expiry: expired
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token})
	if !errors.Is(err, governance.ErrExpired) {
		t.Fatalf("consume at expiry = %v, want ErrExpired", err)
	}
	if e := lastEvent(t, env, "approval-"+id); e.Type != governance.TypeApprovalExpired {
		t.Fatalf("recorded %s, want %s", e.Type, governance.TypeApprovalExpired)
	}
	// Once recorded, further attempts are refused without new events, and
	// the sweeper has nothing to do.
	before = dt.Head(t, env.Store)
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token})
	dt.Refused(t, env.Store, before, err, governance.ErrExpired)
	if res, err := env.Governance.ExpireApproval(ctx, tenant("t1"), id); err != nil || len(res.Events) != 0 {
		t.Fatalf("expire an expired approval: %v, %d events", err, len(res.Events))
	}

	// The sweeper records expiry of an unused approval.
	id2, _ := newApproval(t, env)
	env.Clock.Advance(2 * time.Hour)
	res, err := env.Governance.ExpireApproval(ctx, tenant("t1"), id2)
	if err != nil || res.Events[0].Type != governance.TypeApprovalExpired {
		t.Fatalf("sweeper: %v", err)
	}
}

func TestApprovalRefusals(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, token := newApproval(t, env)

	before := dt.Head(t, env.Store)
	_, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1"}, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrApprovalExists)

	_, _, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1"}, -time.Minute)
	dt.Refused(t, env.Store, before, err, governance.ErrBadExpiry)

	_, _, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: "not-a-uuid", IRID: "ir-1"}, time.Hour)
	dt.Refused(t, env.Store, before, err, eventstore.ErrValidation)

	// A token the caller chooses is at least MinTokenLength bytes: its
	// unsalted hash is in the log.
	_, _, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", Token: "123456"}, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrWeakToken)
	chosen := strings.Repeat("k", governance.MinTokenLength)
	if got, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", Token: chosen}, time.Hour); err != nil || got != chosen {
		t.Fatalf("a chosen token of %d bytes: %q, %v", governance.MinTokenLength, got, err)
	}
	before = dt.Head(t, env.Store)

	_, err = env.Governance.ExpireApproval(ctx, tenant("t1"), uuid.NewString())
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)

	if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(3 * time.Hour)
	before = dt.Head(t, env.Store)
	_, err = env.Governance.ExpireApproval(ctx, tenant("t1"), id)
	dt.Refused(t, env.Store, before, err, governance.ErrAlreadyConsumed)
}

func ir(id string, tiers ...int) governance.IR {
	out := governance.IR{ID: id}
	for i, tier := range tiers {
		out.Steps = append(out.Steps, governance.Step{ID: string(rune('a' + i)), Action: "http.get", Tier: tier})
	}
	return out
}

func TestValidateIROutcomes(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	mission := uuid.NewString()

	res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: ir("ir-pass", 0, 1, 1), MissionID: mission})
	if err != nil || res.Events[0].Type != governance.TypeValidatedPass || res.Aggregate.State.MaxTier != 1 {
		t.Fatalf("tiers 0-1: %v %+v", err, res.Events)
	}

	res, err = env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: ir("ir-esc", 0, 2, 3, 1)})
	if err != nil || res.Events[0].Type != governance.TypeValidatedEscalate {
		t.Fatalf("tier 2+: %v", err)
	}
	var esc governance.ValidatedEscalate
	_ = json.Unmarshal(res.Events[0].Payload, &esc)
	if esc.MaxTier != 3 || !slices.Equal(esc.EscalatedSteps, []string{"b", "c"}) {
		t.Fatalf("escalate payload %s", res.Events[0].Payload)
	}

	bad := ir("ir-rej", 0, 0)
	bad.Steps[1].Action = "secrets.exfiltrate"
	res, err = env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: bad})
	if err != nil || res.Events[0].Type != governance.TypeValidatedReject {
		t.Fatalf("forbidden action: %v", err)
	}
	var rej governance.ValidatedReject
	_ = json.Unmarshal(res.Events[0].Payload, &rej)
	if rej.Rule != "no-secret-exfiltration" || rej.StepID != "b" || rej.Action != "secrets.exfiltrate" {
		t.Fatalf("reject payload %s", res.Events[0].Payload)
	}

	// Validating the same IR again changes nothing.
	before := dt.Head(t, env.Store)
	if res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: ir("ir-pass", 0, 1, 1), MissionID: mission}); err != nil || len(res.Events) != 0 || dt.Head(t, env.Store) != before {
		t.Fatalf("revalidation: %v, %d events", err, len(res.Events))
	}
}

func TestValidateIRRefusals(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: ir("ir-1", 0)}); err != nil {
		t.Fatal(err)
	}
	dup := ir("ir-2", 0, 1)
	dup.Steps[1].ID = dup.Steps[0].ID
	badAction := ir("ir-4", 0)
	badAction.Steps[0].Action = "Not An Action"
	// Two step ids that differ only in bytes that are not UTF-8 would be
	// stored as one ("a\ufffd" twice): the verdict would be on another
	// plan than the one judged.
	badUTF8 := ir("ir-5", 0, 1)
	badUTF8.Steps[0].ID, badUTF8.Steps[1].ID = "a\xff", "a\xfe"
	badUTF8Action := ir("ir-6", 0)
	badUTF8Action.Steps[0].Action = "http.get\xff"
	for _, c := range []struct {
		name string
		ir   governance.IR
		want error
	}{
		{"changed plan under the same id", ir("ir-1", 0, 3), governance.ErrIRChanged},
		{"no steps", governance.IR{ID: "ir-2"}, governance.ErrMalformedIR},
		{"duplicate step ids", dup, governance.ErrMalformedIR},
		{"tier out of range", ir("ir-3", 4), governance.ErrMalformedIR},
		{"action breaking the schema", badAction, eventstore.ErrValidation},
		{"step ids not valid UTF-8", badUTF8, governance.ErrMalformedIR},
		{"action not valid UTF-8", badUTF8Action, governance.ErrMalformedIR},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := dt.Head(t, env.Store)
			_, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: c.ir})
			dt.Refused(t, env.Store, before, err, c.want)
		})
	}
}

func TestDAGDiff(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	plan := ir("ir-dag", 0, 1, 2)
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan}); err != nil {
		t.Fatal(err)
	}
	res, err := env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-dag", Nodes: []governance.Step{plan.Steps[2], plan.Steps[0], plan.Steps[1]}})
	if err != nil || res.Events[0].Type != governance.TypeDAGDiffOK {
		t.Fatalf("matching DAG: %v", err)
	}

	tampered := []governance.Step{plan.Steps[0], {ID: "b", Action: "shell.exec", Tier: 1}, {ID: "z", Action: "http.post", Tier: 0}}
	res, err = env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-dag", Nodes: tampered})
	if err != nil || res.Events[0].Type != governance.TypeDAGDiffFailed {
		t.Fatalf("tampered DAG: %v", err)
	}
	var p governance.DAGDiffFailed
	_ = json.Unmarshal(res.Events[0].Payload, &p)
	if p.Severity != "critical" || !slices.Equal(p.MissingSteps, []string{"c"}) || !slices.Equal(p.UnexpectedNodes, []string{"z"}) || !slices.Equal(p.ChangedNodes, []string{"b"}) {
		t.Fatalf("diff payload %s", res.Events[0].Payload)
	}
	if s := res.Aggregate.State; s.DAGChecks != 2 || s.DAGFailures != 1 {
		t.Fatalf("state = %+v", s)
	}

	// Refusals: no validated IR, a rejected IR.
	before := dt.Head(t, env.Store)
	_, err = env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-none", Nodes: plan.Steps})
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
	bad := ir("ir-bad", 0)
	bad.Steps[0].Action = "audit.disable"
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: bad}); err != nil {
		t.Fatal(err)
	}
	before = dt.Head(t, env.Store)
	_, err = env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-bad", Nodes: bad.Steps})
	dt.Refused(t, env.Store, before, err, governance.ErrDAGBeforeCheck)
}

func TestDiffDuplicateNodeIsUnexpected(t *testing.T) {
	t.Parallel()
	steps := []governance.Step{{ID: "a", Action: "x", Tier: 0}}
	m, u, c := governance.Diff(steps, []governance.Step{steps[0], steps[0]})
	if len(m) != 0 || !slices.Equal(u, []string{"a"}) || len(c) != 0 {
		t.Fatalf("Diff = %v %v %v", m, u, c)
	}
}

// Approvers racing to consume one approval in PostgreSQL: exactly one
// succeeds and one ir.approval_consumed is stored; every other use is
// refused as already consumed (or, out of retries, as a conflict) and
// never consumes it again.
func TestApprovalConsumedOnceByRacingApprovers(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, token := newApproval(t, env)
	const approvers = 8
	errs := make(chan error, approvers)
	var wg sync.WaitGroup
	for i := range approvers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: fmt.Sprintf("approver-%d", i)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, governance.ErrAlreadyConsumed), errors.Is(err, eventstore.ErrConcurrency):
		default:
			t.Errorf("consume: %v", err)
		}
	}
	consumed := 0
	for _, typ := range dt.Types(t, env.Store, "approval-"+id) {
		if typ == governance.TypeApprovalConsumed {
			consumed++
		}
	}
	if ok != 1 || consumed != 1 {
		t.Fatalf("%d consumes succeeded and %d ir.approval_consumed are stored, want 1 and 1", ok, consumed)
	}
}

// A refused use is recorded whatever the presenter sends: who they say
// they are and which tenant they present are theirs to choose, and a value
// the ir.approval_invalid schema does not take (too long, a NUL byte) must
// not keep the attempt out of the log. The recorded values are bounded.
func TestApprovalInvalidRecordedWhateverThePresenterSends(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := newApproval(t, env)
	long := strings.Repeat("m", 300) + "\x00"

	_, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: "guess", ConsumedBy: long})
	p := checkInvalid(t, env, err, id, governance.ErrTokenMismatch, governance.ReasonTokenMismatch, "t1")
	if n := len([]rune(p.AttemptedBy)); n == 0 || n > 255 || strings.ContainsRune(p.AttemptedBy, 0) || !strings.HasPrefix(p.AttemptedBy, "mmm") {
		t.Fatalf("attempted_by recorded as %q (%d characters)", p.AttemptedBy, n)
	}

	_, err = env.Governance.ConsumeApproval(ctx, tenant(long), governance.ConsumeApproval{ApprovalID: id, Token: "guess", ConsumedBy: "mallory\x00"})
	p = checkInvalid(t, env, err, id, governance.ErrUnknownApproval, governance.ReasonTenantMismatch, "t1")
	if n := len([]rune(p.PresentedTenantID)); n == 0 || n > 255 || strings.ContainsRune(p.PresentedTenantID, 0) || p.AttemptedBy == "" || strings.ContainsRune(p.AttemptedBy, 0) {
		t.Fatalf("recorded presented tenant %q (%d characters), attempted_by %q", p.PresentedTenantID, n, p.AttemptedBy)
	}
}

// Tampering is recorded whatever the DAG's nodes are called: a node id the
// ir.dag_diff_failed schema does not take (empty, longer than 128
// characters, with a NUL byte), or more extra nodes than it lists, must
// not keep the critical record out of the log.
func TestDAGTamperingRecordedWhateverTheNodeIDs(t *testing.T) {
	t.Parallel()
	many := make([]governance.Step, 1500)
	for i := range many {
		many[i] = governance.Step{ID: fmt.Sprintf("%0120d", i), Action: "http.get"}
	}
	for _, store := range dt.Backends {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, store, domain.Options{})
			plan := ir("ir-dag", 0, 1)
			if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan}); err != nil {
				t.Fatal(err)
			}
			for name, extra := range map[string][]governance.Step{
				"empty id":         {{ID: "", Action: "shell.exec", Tier: 0}},
				"long id":          {{ID: strings.Repeat("z", 200), Action: "shell.exec"}},
				"nul id":           {{ID: "a\x00", Action: "shell.exec"}},
				"1500 extra nodes": many,
			} {
				nodes := append(slices.Clone(plan.Steps), extra...)
				res, err := env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-dag", Nodes: nodes})
				if err != nil || len(res.Events) != 1 || res.Events[0].Type != governance.TypeDAGDiffFailed {
					t.Fatalf("%s: %v, %d events", name, err, len(res.Events))
				}
				var p governance.DAGDiffFailed
				_ = json.Unmarshal(res.Events[0].Payload, &p)
				if p.Severity != governance.SeverityCritical || len(p.UnexpectedNodes) == 0 || len(p.MissingSteps) != 0 || len(p.ChangedNodes) != 0 {
					t.Fatalf("%s: recorded %s", name, res.Events[0].Payload)
				}
			}
		})
	}
}

// An expiry the log cannot hold (after year 9999, which RFC 3339 cannot
// write) is refused as a bad expiry, whether given or computed from a
// TTL, not failed with an encoding error.
func TestApprovalExpiryBeyondYear9999Refused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	before := dt.Head(t, env.Store)
	_, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, 0)
	dt.Refused(t, env.Store, before, err, governance.ErrBadExpiry)

	env.Clock.T = time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC)
	_, _, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1"}, 2*time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrBadExpiry)
	if _, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1"}, 30*time.Minute); err != nil {
		t.Fatalf("an expiry in year 9999: %v", err)
	}
}

// The expiry of an approval is a fact of the approval's tenant:
// ir.approval_expired is recorded for it, as ir.approval_invalid is, so
// that the tenant's alerts and projections see it and the approval's
// stream holds one tenant's events. A sweeper sweeps as that tenant;
// sweeping as another is answered as for an unknown approval and writes
// nothing (TestAnotherTenantsExpireApprovalIsAnsweredAsUnknown).
func TestApprovalExpiredRecordedForTheApprovalsTenant(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := newApproval(t, env)
	env.Clock.Advance(2 * time.Hour)
	before := dt.Head(t, env.Store)
	_, err := env.Governance.ExpireApproval(ctx, tenant("sweeper"), id)
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
	res, err := env.Governance.ExpireApproval(ctx, tenant("t1"), id)
	if err != nil || len(res.Events) != 1 || res.Events[0].Type != governance.TypeApprovalExpired {
		t.Fatalf("sweep: %v, %d events", err, len(res.Events))
	}
	if e := lastEvent(t, env, "approval-"+id); e.Meta.TenantID != "t1" {
		t.Fatalf("ir.approval_expired recorded for tenant %q, want the approval's t1", e.Meta.TenantID)
	}
}

// An IR id belongs to the tenant that validated it: another tenant's
// ValidateIR of that id, with the same plan or another, is refused with
// nothing written, and neither the refusal nor a result tells it the IR's
// verdict, hash or steps.
func TestValidateIRIsTheTenantsOwn(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	plan := ir("ir-owned", 0, 2)
	res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan})
	if err != nil {
		t.Fatal(err)
	}
	sum := res.Aggregate.State.SHA256
	for _, other := range []governance.IR{plan, ir("ir-owned", 0, 1)} {
		before := dt.Head(t, env.Store)
		res, err := env.Governance.ValidateIR(ctx, tenant("t2"), governance.ValidateIR{IR: other})
		dt.Refused(t, env.Store, before, err, governance.ErrIRTenant)
		if msg := err.Error(); strings.Contains(msg, governance.OutcomeEscalate) || strings.Contains(msg, sum[:12]) {
			t.Fatalf("the refusal tells another tenant about the IR: %s", msg)
		}
		if res.Aggregate != nil {
			t.Fatalf("the refused result carries the IR's state: %+v", res.Aggregate.State)
		}
	}
	// Its own tenant validates it again as before: nothing new.
	if res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan}); err != nil || len(res.Events) != 0 {
		t.Fatalf("the owner's second validation: %v, %d events", err, len(res.Events))
	}
}

// A DAG check is recorded for the IR's tenant, never another's: a
// critical ir.dag_diff_failed must reach the alerts of the tenant whose
// plan was tampered with. A check asked for under another tenant (a
// compiler with an identity of its own) is refused with ir-tenant and
// recorded under no tenant (TestCheckDAGIsTheIRTenantsOwn); it used to
// be recorded for the IR's tenant, which let any tenant write into it.
func TestDAGCheckRecordedForTheIRsTenant(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	plan := ir("ir-dag", 0, 1)
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan}); err != nil {
		t.Fatal(err)
	}
	for _, nodes := range [][]governance.Step{plan.Steps, plan.Steps[:1]} {
		before := dt.Head(t, env.Store)
		_, err := env.Governance.CheckDAG(ctx, tenant("compiler"), governance.CheckDAG{IRID: "ir-dag", Nodes: nodes})
		dt.Refused(t, env.Store, before, err, governance.ErrIRTenant)
		res, err := env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-dag", Nodes: nodes})
		if err != nil || len(res.Events) != 1 {
			t.Fatalf("check: %v", err)
		}
		if e := res.Events[0]; e.Meta.TenantID != "t1" {
			t.Fatalf("%s recorded for tenant %q, want the IR's t1", e.Type, e.Meta.TenantID)
		}
	}
}

// When several reasons apply, the first in ConsumeApproval's documented
// order wins: unknown approval, tenant mismatch, already consumed, expired,
// token mismatch (then mission and four eyes: see
// TestApprovalFourEyesRefusalRecordedOnce).
func TestApprovalRefusalPrecedence(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	consumed, token := newApproval(t, env)
	if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: consumed, Token: token, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	unused, _ := newApproval(t, env)
	env.Clock.Advance(2 * time.Hour) // both past expiry

	// Another tenant, consumed, expired, wrong token: tenant mismatch.
	_, err := env.Governance.ConsumeApproval(ctx, tenant("t2"), governance.ConsumeApproval{ApprovalID: consumed, Token: "guess"})
	checkInvalid(t, env, err, consumed, governance.ErrUnknownApproval, governance.ReasonTenantMismatch, "t1")
	// Consumed, expired, wrong token: already consumed.
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: consumed, Token: "guess"})
	checkInvalid(t, env, err, consumed, governance.ErrAlreadyConsumed, governance.ReasonAlreadyConsumed, "t1")
	// Expired, wrong token: expired, recorded once.
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: unused, Token: "guess"})
	if !errors.Is(err, governance.ErrExpired) || lastEvent(t, env, "approval-"+unused).Type != governance.TypeApprovalExpired {
		t.Fatalf("expired approval, wrong token: %v", err)
	}
}

// An approval created for a mission is not consumed for another one: the
// use is refused, recorded as mission_mismatch (and nothing else written),
// and the approval stays usable for its own mission.
func TestApprovalConsumedForAnotherMissionRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, mission := uuid.NewString(), uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", MissionID: mission}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := dt.Types(t, env.Store, "approval-"+id)
	_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, MissionID: uuid.NewString()})
	checkInvalid(t, env, err, id, governance.ErrApprovalMission, governance.ReasonMissionMismatch, "t1")
	if got, want := dt.Types(t, env.Store, "approval-"+id), append(before, governance.TypeApprovalInvalid); !slices.Equal(got, want) {
		t.Fatalf("the approval's stream went from %v to %v, want only the record", before, got)
	}
	res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, MissionID: mission})
	if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.MissionID != mission {
		t.Fatalf("consume for its own mission: %v", err)
	}
}

// An IR is validated once, but every mission that runs it needs its
// verdict (missions wait in created for an ir.validated_* naming them).
// Validating an IR already validated, for a mission it was not validated
// for, records the stored verdict again for that mission; for a mission
// it was recorded for, or for none, it writes nothing. Before, a second
// mission on a validated IR got no verdict and waited forever.
func TestValidatedIRVerdictRecordedForEachMission(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	bad := ir("ir-rej", 0, 1)
	bad.Steps[1].Action = "tenant.delete"
	for _, c := range []struct {
		plan governance.IR
		typ  string
	}{{ir("ir-esc", 0, 2, 3), governance.TypeValidatedEscalate}, {ir("ir-pass", 0, 1), governance.TypeValidatedPass}, {bad, governance.TypeValidatedReject}} {
		t.Run(c.typ, func(t *testing.T) {
			// The first validation names no mission; each mission then gets
			// the verdict once.
			first, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: c.plan})
			if err != nil || len(first.Events) != 1 || first.Events[0].Type != c.typ {
				t.Fatalf("first validation: %v", err)
			}
			want := payloadMap(t, first.Events[0].Payload)
			for _, m := range []string{uuid.NewString(), uuid.NewString()} {
				res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: c.plan, MissionID: m})
				if err != nil || len(res.Events) != 1 || res.Events[0].Type != c.typ {
					t.Fatalf("validation for mission %s: %v, %d events", m, err, len(res.Events))
				}
				got := payloadMap(t, res.Events[0].Payload)
				if got["mission_id"] != m {
					t.Fatalf("verdict %s names mission %v, want %s", res.Events[0].Payload, got["mission_id"], m)
				}
				delete(got, "mission_id")
				if gb, wb := fmt.Sprint(got), fmt.Sprint(want); gb != wb {
					t.Fatalf("verdict for the mission %s differs from the IR's %s", gb, wb)
				}
				for _, again := range []string{m, ""} {
					before := dt.Head(t, env.Store)
					res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: c.plan, MissionID: again})
					if err != nil || len(res.Events) != 0 || dt.Head(t, env.Store) != before {
						t.Fatalf("validation again for %q: %v, %d events", again, err, len(res.Events))
					}
				}
			}
		})
	}
}

func payloadMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// An approval id no approval can have (approval ids are UUIDs) is refused
// as an unknown approval, typed and with nothing written, rather than
// failing on the schema of the ir.approval_invalid the refusal would
// record (or, for an id no stream can have, on the read); the sweeper and
// ApprovalStatus answer not found.
func TestApprovalMalformedIDRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	for _, id := range []string{"not-a-uuid", "", strings.Repeat("a", 300), "a\x00b", "{" + uuid.NewString() + "}"} {
		before := dt.Head(t, env.Store)
		res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: "guess", ConsumedBy: "mallory"})
		var re *aggregates.RuleError
		if !errors.Is(err, governance.ErrUnknownApproval) || !errors.As(err, &re) || re.Aggregate != governance.ApprovalAggregate || len(res.Events) != 0 {
			t.Fatalf("consume %q: %v (%d events), want a refusal [%s]", id, err, len(res.Events), governance.ErrUnknownApproval.Rule)
		}
		if after := dt.Head(t, env.Store); after != before {
			t.Fatalf("consume %q moved the log", id)
		}
		_, err = env.Governance.ExpireApproval(ctx, tenant("t1"), id)
		dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
		if _, err := env.Governance.ApprovalStatus(ctx, id); !errors.Is(err, aggregates.ErrNotFound) {
			t.Fatalf("ApprovalStatus(%q) = %v, want not found", id, err)
		}
	}
}

// A DAG check is its IR's tenant's, as validation is: another tenant's
// CheckDAG of the IR, matching or not, is refused with ir-tenant, writes
// nothing, and learns nothing of the IR (its steps, hash, verdict or
// rule). Before, it was recorded for the IR's tenant, so any tenant could
// fill another's stream with critical tampering alerts or attest a DAG
// as matching, and the result (the IR's state, the diff) handed it the
// plan.
func TestCheckDAGIsTheIRTenantsOwn(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	plan := ir("ir-owned", 0, 2)
	res, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: plan})
	if err != nil {
		t.Fatal(err)
	}
	sum := res.Aggregate.State.SHA256
	bad := ir("ir-bad", 0)
	bad.Steps[0].Action = "audit.disable"
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: bad}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []governance.CheckDAG{
		{IRID: "ir-owned", Nodes: plan.Steps},
		{IRID: "ir-owned", Nodes: plan.Steps[:1]},
		{IRID: "ir-bad", Nodes: bad.Steps},
	} {
		before := dt.Head(t, env.Store)
		res, err := env.Governance.CheckDAG(ctx, tenant("t2"), c)
		dt.Refused(t, env.Store, before, err, governance.ErrIRTenant)
		if msg := err.Error(); strings.Contains(msg, sum[:12]) || strings.Contains(msg, "no-audit-tampering") || strings.Contains(msg, "reject") {
			t.Fatalf("the refusal tells another tenant about the IR: %s", msg)
		}
		if res.Aggregate != nil || len(res.Events) != 0 {
			t.Fatalf("the refused result carries the IR: %+v", res)
		}
	}
	// The IR's tenant checks it as before.
	if res, err := env.Governance.CheckDAG(ctx, tenant("t1"), governance.CheckDAG{IRID: "ir-owned", Nodes: plan.Steps}); err != nil || len(res.Events) != 1 || res.Events[0].Type != governance.TypeDAGDiffOK {
		t.Fatalf("the owner's check: %v", err)
	}
}

// Another tenant presenting an approval learns nothing of it: the refusal
// is recorded for the approval's tenant, but the result handed to the
// presenter carried the approval as loaded (its token's hash, IR,
// mission, expiry, consumer) and the record naming its IR. A sweeper of
// another tenant does not learn who consumed an approval either (it is
// answered as for an unknown approval).
func TestApprovalNothingLeaksToAnotherTenant(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, token := newApproval(t, env)
	st, err := env.Governance.ApprovalStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	secret := []string{st.IRID, st.MissionID, st.TokenSHA256[:12], "alice"}
	leaks := func(what string, err error, res aggregates.Result[governance.ApprovalState]) {
		t.Helper()
		for _, s := range secret {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("%s: the refusal names %q: %v", what, s, err)
			}
		}
		if res.Aggregate != nil || len(res.Events) != 0 {
			t.Fatalf("%s: the result carries the approval: %+v", what, res)
		}
	}
	res, err := env.Governance.ConsumeApproval(ctx, tenant("t2"), governance.ConsumeApproval{ApprovalID: id, Token: token})
	checkInvalid(t, env, err, id, governance.ErrUnknownApproval, governance.ReasonTenantMismatch, "t1")
	leaks("before use", err, res)

	if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	res, err = env.Governance.ConsumeApproval(ctx, tenant("t2"), governance.ConsumeApproval{ApprovalID: id, Token: token})
	checkInvalid(t, env, err, id, governance.ErrUnknownApproval, governance.ReasonTenantMismatch, "t1")
	leaks("after use", err, res)

	env.Clock.Advance(2 * time.Hour)
	before := dt.Head(t, env.Store)
	res, err = env.Governance.ExpireApproval(ctx, tenant("t2"), id)
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
	leaks("sweeper", err, res)
}

// IRStatus is what missions check a verdict against: an IR with no verdict
// is not found (so a mission records none), a validated one gives its
// verdict, plan hash, tenant and the missions it was recorded for.
func TestIRStatus(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	for _, id := range []string{"", "ir-never"} {
		if _, err := env.Governance.IRStatus(ctx, id); !errors.Is(err, aggregates.ErrNotFound) {
			t.Fatalf("IRStatus(%q) = %v, want not found", id, err)
		}
	}
	bad := ir("ir-rej", 0, 1)
	bad.Steps[1].Action = "tenant.delete"
	mission := uuid.NewString()
	if _, err := env.Governance.ValidateIR(ctx, tenant("t1"), governance.ValidateIR{IR: bad, MissionID: mission}); err != nil {
		t.Fatal(err)
	}
	st, err := env.Governance.IRStatus(ctx, "ir-rej")
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != governance.OutcomeReject || st.Rule != "no-tenant-deletion" || st.SHA256 != bad.SHA256() ||
		st.TenantID != "t1" || !slices.Equal(st.Missions, []string{mission}) {
		t.Fatalf("IRStatus = %+v", st)
	}
}

// A command id is no secret a tenant keeps: another tenant sending a
// command with the id of one that landed on an IR or an approval of t1 is
// refused as any other tenant's command is (ir-tenant; for an approval,
// approval-known, as one that does not exist), and learns nothing of the
// aggregate; a sweeper of another tenant is answered as for an approval
// that does not exist.
// Before, the landed-command check answered each with ErrCommandReused,
// naming the version where the command landed, and ValidateIR, CheckDAG
// and ConsumeApproval returned the IR or the approval as loaded.
func TestAnotherTenantReusingALandedCommandIDLearnsNothing(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			t1 := func() aggregates.CommandMeta { return aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()} }
			t2 := func(m aggregates.CommandMeta) aggregates.CommandMeta {
				return aggregates.CommandMeta{TenantID: "t2", ID: m.ID}
			}
			hidden := func(what string, err error, carries bool, secrets ...string) {
				t.Helper()
				if errors.Is(err, aggregates.ErrCommandReused) || carries || strings.Contains(err.Error(), " at v") {
					t.Fatalf("%s: the refusal or its result tells another tenant about the aggregate: %v (result carries it: %v)", what, err, carries)
				}
				for _, s := range secrets {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("%s: the refusal names %q: %v", what, s, err)
					}
				}
			}

			plan := ir("ir-reused", 0, 2)
			validated, checked := t1(), t1()
			res, err := env.Governance.ValidateIR(ctx, validated, governance.ValidateIR{IR: plan})
			if err != nil {
				t.Fatal(err)
			}
			sum := res.Aggregate.State.SHA256
			if _, err := env.Governance.CheckDAG(ctx, checked, governance.CheckDAG{IRID: plan.ID, Nodes: plan.Steps}); err != nil {
				t.Fatal(err)
			}
			for _, m := range []aggregates.CommandMeta{validated, checked} {
				before := dt.Head(t, env.Store)
				res, err := env.Governance.ValidateIR(ctx, t2(m), governance.ValidateIR{IR: plan})
				dt.Refused(t, env.Store, before, err, governance.ErrIRTenant)
				hidden("ValidateIR", err, res.Aggregate != nil || len(res.Events) != 0, sum[:12])
				res, err = env.Governance.CheckDAG(ctx, t2(m), governance.CheckDAG{IRID: plan.ID, Nodes: plan.Steps})
				dt.Refused(t, env.Store, before, err, governance.ErrIRTenant)
				hidden("CheckDAG", err, res.Aggregate != nil || len(res.Events) != 0, sum[:12])
			}

			id, token := newApproval(t, env)
			st, err := env.Governance.ApprovalStatus(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			consumed := t1()
			if _, err := env.Governance.ConsumeApproval(ctx, consumed, governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}); err != nil {
				t.Fatal(err)
			}
			secrets := []string{st.IRID, st.MissionID, st.TokenSHA256[:12], "alice"}
			ares, err := env.Governance.ConsumeApproval(ctx, t2(consumed), governance.ConsumeApproval{ApprovalID: id, Token: token})
			if !errors.Is(err, governance.ErrUnknownApproval) {
				t.Fatalf("ConsumeApproval: error = %v, want %v", err, governance.ErrUnknownApproval)
			}
			hidden("ConsumeApproval", err, ares.Aggregate != nil || len(ares.Events) != 0, secrets...)
			// Its own tenant's retry (before the approval expires) still
			// gets its result.
			if res, err := env.Governance.ConsumeApproval(ctx, consumed, governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"}); err != nil || len(res.Events) != 1 || res.Events[0].Type != governance.TypeApprovalConsumed {
				t.Fatalf("the retried ConsumeApproval: %v, %v", err, res.Events)
			}

			// Another tenant's sweep reusing the id of t1's consumption
			// learns no more than for an approval that does not exist.
			env.Clock.Advance(2 * time.Hour)
			before := dt.Head(t, env.Store)
			ares, err = env.Governance.ExpireApproval(ctx, t2(consumed), id)
			dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
			if ares.Aggregate != nil || len(ares.Events) != 0 || strings.Contains(err.Error(), " at v") {
				t.Fatalf("ExpireApproval: the error tells another tenant about the approval: %v, %+v", err, ares)
			}

			// The IR's tenant's retried CheckDAG still gets its result.
			if res, err := env.Governance.CheckDAG(ctx, checked, governance.CheckDAG{IRID: plan.ID, Nodes: plan.Steps}); err != nil || len(res.Events) != 1 || res.Events[0].Version != 2 {
				t.Fatalf("the retried CheckDAG: %v, %v", err, res.Events)
			}
		})
	}
}

// Four eyes: the principal who requested an approval does not grant it.
// The requester consuming it, under its name give or take case and
// surrounding spaces, is refused with no-self-approval; an approver who
// does not say who they are, with approver-named (they could be the
// requester). Each refusal consumes nothing and is recorded, as one
// ir.approval_invalid v2 for the approval's tenant naming the reason and
// who presented it (fourEyesRecorded); only a holder of the token gets
// that far (a wrong token is recorded as token_mismatch, whoever presents
// it), and another approver then consumes it. Before, the requester could
// approve its own request; then it was refused but left no trace, so no
// security alert.
func TestApprovalFourEyes(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id, token := newApproval(t, env) // requested by "planner"

			_, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: "guess", ConsumedBy: "planner"})
			checkInvalid(t, env, err, id, governance.ErrTokenMismatch, governance.ReasonTokenMismatch, "t1")
			for _, c := range []struct {
				by     string
				rule   error
				reason governance.InvalidReason
			}{
				{"planner", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{" PLANNER\t", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{"", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
				{"   ", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
			} {
				res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by})
				fourEyesRecorded(t, env, id, c.by, res, err, c.rule, c.reason)
			}
			res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"})
			if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.ConsumedBy != "alice" || res.Aggregate.State.RequestedBy != "planner" {
				t.Fatalf("another approver: %v", err)
			}
			if inv := res.Aggregate.State.Invalid; inv[governance.ReasonSelfApproval] != 2 || inv[governance.ReasonApproverUnnamed] != 2 || inv[governance.ReasonTokenMismatch] != 1 {
				t.Fatalf("the approval counts the refused uses %v, want 2 self_approval, 2 approver_unnamed, 1 token_mismatch", inv)
			}

			// An approval that names no requester has no one to compare with.
			anon := uuid.NewString()
			token, _, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: anon, IRID: "ir-1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: anon, Token: token}); err != nil {
				t.Fatalf("an approval with no requester: %v", err)
			}
		})
	}
}

// Characters that show nothing do not make another principal: the
// requester with a zero-width space (or another format or control
// character) around or inside its name is still the requester, and an
// approver named only by such characters names no one. Each is refused
// and recorded as the plain name would be, and the approval stays
// unconsumed. Before, "planner\u200b" consumed planner's own request, and
// the log showed an approval granted by someone who reads as "planner".
func TestApprovalFourEyesSeesThroughInvisibleCharacters(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id, token := newApproval(t, env) // requested by "planner"
			for _, c := range []struct {
				by     string
				rule   error
				reason governance.InvalidReason
			}{
				{"planner\u200b", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{"\u200bPlanner", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{"plan\u00adner", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{" planner\u2060 ", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{"\u200b", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
				{"\u200b \ufeff", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
			} {
				res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by})
				fourEyesRecorded(t, env, id, c.by, res, err, c.rule, c.reason)
			}
			res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"})
			if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.ConsumedBy != "alice" {
				t.Fatalf("another approver: %v", err)
			}
		})
	}
}

// Names that are the same text in Unicode are one principal: the
// requester spelled with a combining accent where it was requested with a
// precomposed letter (canonically equivalent: the same characters, shown
// identically), in fullwidth letters, with a ligature, or differing by a
// case only full case folding sees, is still the requester. Each is
// refused and recorded as the plain name would be, and the approval stays
// unconsumed. Before, "jose\u0301" consumed "José"'s own request.
func TestApprovalFourEyesSeesThroughEquivalentSpellings(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			for _, c := range []struct{ requester, by string }{
				{"Jos\u00e9", "jose\u0301"},                               // NFC requester, NFD approver
				{"Jose\u0301", "jos\u00e9"},                               // and the other way round
				{"Jos\u00e9", "JOSE\u200b\u0301"},                         // and an invisible character between
				{"planner", "\uff50\uff4c\uff41\uff4e\uff4e\uff45\uff52"}, // fullwidth
				{"office", "o\ufb03ce"},                                   // the "ffi" ligature
				{"strauss", "STRAU\u00df"},                                // ß folds to ss
				{"\u212bngstr\u00f6m", "\u00c5NGSTRO\u0308M"},             // the Angstrom sign is Å
			} {
				id, token := uuid.NewString(), "0123456789abcdef-"+uuid.NewString()
				if _, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", Token: token, RequestedBy: c.requester}, time.Hour); err != nil {
					t.Fatal(err)
				}
				res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by})
				fourEyesRecorded(t, env, id, c.by, res, err, governance.ErrSelfApproval, governance.ReasonSelfApproval)
				// Someone else still grants it.
				res, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"})
				if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.ConsumedBy != "alice" {
					t.Fatalf("requested by %q, another approver: %v", c.requester, err)
				}
			}
		})
	}
}

// Characters that Unicode says to show nothing for (Default_Ignorable_Code_Point)
// but that are no control or format character are left out of names like
// U+200B: a combining grapheme joiner, a variation selector, a Hangul
// filler. "planner" followed by one is "planner", on either side, and an
// approver named only by them names no one. Before, only Cc and Cf were
// left out, so "planner\u034f" consumed planner's own request and "\u3164"
// (which shows as a blank) was an approver's name.
func TestApprovalFourEyesSeesThroughDefaultIgnorables(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			for _, c := range []struct {
				requester, by string
				rule          error
				reason        governance.InvalidReason
			}{
				{"planner", "planner\u034f", governance.ErrSelfApproval, governance.ReasonSelfApproval},      // combining grapheme joiner
				{"planner", "plan\ufe0fner", governance.ErrSelfApproval, governance.ReasonSelfApproval},      // variation selector 16
				{"planner", "planner\U000e0100", governance.ErrSelfApproval, governance.ReasonSelfApproval},  // variation selector 17
				{"planner", "\u3164planner", governance.ErrSelfApproval, governance.ReasonSelfApproval},      // Hangul filler
				{"planner", "planner\uffa0", governance.ErrSelfApproval, governance.ReasonSelfApproval},      // halfwidth Hangul filler
				{"planner\u180b", "PLANNER", governance.ErrSelfApproval, governance.ReasonSelfApproval},      // on the requester's side
				{"jos\u00e9\u034f", "jose\u0301", governance.ErrSelfApproval, governance.ReasonSelfApproval}, // with a canonical equivalent
				{"planner", "\u3164", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
				{"planner", "\u034f\ufe0f \u115f\u1160", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
			} {
				id, token := uuid.NewString(), "0123456789abcdef-"+uuid.NewString()
				if _, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", Token: token, RequestedBy: c.requester}, time.Hour); err != nil {
					t.Fatal(err)
				}
				res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by})
				fourEyesRecorded(t, env, id, c.by, res, err, c.rule, c.reason)
				res, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice"})
				if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.ConsumedBy != "alice" {
					t.Fatalf("requested by %q, another approver: %v", c.requester, err)
				}
			}
		})
	}
}

// fourEyesRecorded checks that a ConsumeApproval presented by "by" was
// refused with rule, consumed nothing, and wrote exactly one event: an
// ir.approval_invalid v2 with reason for the approval's tenant (t1),
// naming the approval, its IR and who presented it as they sent it, which
// the result carries.
func fourEyesRecorded(t *testing.T, env *dt.Env, id, by string, res aggregates.Result[governance.ApprovalState], err, rule error, reason governance.InvalidReason) {
	t.Helper()
	if !errors.Is(err, rule) {
		t.Fatalf("consumed by %q: error = %v, want %v", by, err, rule)
	}
	var re *aggregates.RuleError
	if !errors.As(err, &re) || re.Aggregate != governance.ApprovalAggregate || re.ID != id {
		t.Fatalf("consumed by %q: %v does not name the approval", by, err)
	}
	e := lastEvent(t, env, "approval-"+id)
	if len(res.Events) != 1 || res.Events[0].ID != e.ID {
		t.Fatalf("consumed by %q: the refusal returned %d events, want the one it recorded", by, len(res.Events))
	}
	if e.Type != governance.TypeApprovalInvalid || e.Meta.SchemaVersion != 2 || e.Meta.TenantID != "t1" {
		t.Fatalf("consumed by %q: recorded %s v%d for tenant %s, want %s v2 for t1", by, e.Type, e.Meta.SchemaVersion, e.Meta.TenantID, governance.TypeApprovalInvalid)
	}
	want := map[string]any{"approval_id": id, "ir_id": "ir-1", "reason": string(reason)}
	if by != "" {
		want["attempted_by"] = by
	}
	if got := payloadMap(t, e.Payload); !reflect.DeepEqual(got, want) {
		t.Fatalf("consumed by %q: recorded %v, want %v", by, got, want)
	}
	if st, err := env.Governance.ApprovalStatus(ctx, id); err != nil || st.Consumed {
		t.Fatalf("consumed by %q: the refused approval is consumed (%v)", by, err)
	}
}

// A four-eyes refusal is recorded like the other refused uses, also on
// retry: the same command sent again (same command id, a client retrying
// after a timeout) returns the same refusal and the event it recorded the
// first time, and records nothing more; a new attempt (a new command id)
// is recorded again. The four-eyes check comes last: the requester naming
// another mission than the approval's is refused as approval-mission and
// recorded as mission_mismatch (as for anyone: see
// TestApprovalMissionMismatchRecorded), and a wrong token is
// token_mismatch.
func TestApprovalFourEyesRefusalRecordedOnce(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id, token := newApproval(t, env) // requested by "planner", for a mission

			_, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "planner", MissionID: uuid.NewString()})
			checkInvalid(t, env, err, id, governance.ErrApprovalMission, governance.ReasonMissionMismatch, "t1")

			for _, c := range []struct {
				by     string
				rule   error
				reason governance.InvalidReason
			}{
				{"planner", governance.ErrSelfApproval, governance.ReasonSelfApproval},
				{"", governance.ErrApproverUnnamed, governance.ReasonApproverUnnamed},
			} {
				meta := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
				consume := governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: c.by}
				first, err := env.Governance.ConsumeApproval(ctx, meta, consume)
				fourEyesRecorded(t, env, id, c.by, first, err, c.rule, c.reason)
				recorded := dt.Head(t, env.Store)

				again, err := env.Governance.ConsumeApproval(ctx, meta, consume)
				if !errors.Is(err, c.rule) {
					t.Fatalf("the retry: %v, want %v as the first time", err, c.rule)
				}
				if len(again.Events) != 1 || again.Events[0].ID != first.Events[0].ID {
					t.Fatalf("the retry returned %v, want the event the first attempt recorded", again.Events)
				}
				if after := dt.Head(t, env.Store); after != recorded {
					t.Fatalf("the retry moved the log from %s to %s", recorded, after)
				}
				if n := countInvalid(t, env, id, c.reason); n != 1 {
					t.Fatalf("%d %s recorded after a retry, want 1", n, c.reason)
				}

				// Another attempt is another record.
				res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), consume)
				fourEyesRecorded(t, env, id, c.by, res, err, c.rule, c.reason)
				if n := countInvalid(t, env, id, c.reason); n != 2 {
					t.Fatalf("%d %s recorded after a second attempt, want 2", n, c.reason)
				}
			}
		})
	}
}

// countInvalid counts the ir.approval_invalid with reason in the
// approval's stream.
func countInvalid(t *testing.T, env *dt.Env, id string, reason governance.InvalidReason) int {
	t.Helper()
	evs, err := env.Store.ReadStream(ctx, "approval-"+id, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == governance.TypeApprovalInvalid && payloadMap(t, e.Payload)["reason"] == string(reason) {
			n++
		}
	}
	return n
}

// An approval created for mission A presented, with its token, for
// mission B is refused with approval-mission, consumes nothing, and is
// recorded as one ir.approval_invalid v2 (mission_mismatch) for the
// approval's tenant, naming the mission the presenter named (bounded like
// the other presented values) and who presented it: using a valid
// approval to authorise another mission is an attempt round the control.
// The check comes after the token's (a wrong token for another mission is
// token_mismatch) and before four eyes (the requester presenting it for
// another mission is mission_mismatch). The same command sent again (same
// command id) returns the event recorded the first time and records
// nothing more. Before, the refusal left no trace.
func TestApprovalMissionMismatchRecorded(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id, mission, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
			token, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1", MissionID: mission, RequestedBy: "planner"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}

			// A wrong token for another mission: token_mismatch.
			_, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: "guess", ConsumedBy: "mallory", MissionID: other})
			if p := checkInvalid(t, env, err, id, governance.ErrTokenMismatch, governance.ReasonTokenMismatch, "t1"); p.PresentedMissionID != "" {
				t.Fatalf("a token_mismatch names the presented mission %q", p.PresentedMissionID)
			}

			meta := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
			consume := governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "mallory", MissionID: other}
			first, err := env.Governance.ConsumeApproval(ctx, meta, consume)
			missionMismatchRecorded(t, env, id, first, err, map[string]any{"presented_mission_id": other, "attempted_by": "mallory"})
			recorded := dt.Head(t, env.Store)

			again, err := env.Governance.ConsumeApproval(ctx, meta, consume)
			if !errors.Is(err, governance.ErrApprovalMission) {
				t.Fatalf("the retry: %v, want %v as the first time", err, governance.ErrApprovalMission)
			}
			if len(again.Events) != 1 || again.Events[0].ID != first.Events[0].ID {
				t.Fatalf("the retry returned %v, want the event the first attempt recorded", again.Events)
			}
			if after := dt.Head(t, env.Store); after != recorded {
				t.Fatalf("the retry moved the log from %s to %s", recorded, after)
			}
			if n := countInvalid(t, env, id, governance.ReasonMissionMismatch); n != 1 {
				t.Fatalf("%d mission_mismatch recorded after a retry, want 1", n)
			}

			// The requester, for another mission: the mission is checked
			// before four eyes.
			res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "planner", MissionID: other})
			missionMismatchRecorded(t, env, id, res, err, map[string]any{"presented_mission_id": other, "attempted_by": "planner"})

			// Whatever the presenter names is recorded, bounded.
			res, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "mallory", MissionID: strings.Repeat("m", 300) + "\x00"})
			missionMismatchRecorded(t, env, id, res, err, map[string]any{"presented_mission_id": strings.Repeat("m", 254) + "…", "attempted_by": "mallory"})

			res, err = env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "alice", MissionID: mission})
			if err != nil || !res.Aggregate.State.Consumed || res.Aggregate.State.MissionID != mission {
				t.Fatalf("consumed for its own mission: %v", err)
			}
			if inv := res.Aggregate.State.Invalid; inv[governance.ReasonMissionMismatch] != 3 || inv[governance.ReasonTokenMismatch] != 1 || len(inv) != 2 {
				t.Fatalf("the approval counts the refused uses %v, want 3 mission_mismatch, 1 token_mismatch", inv)
			}
		})
	}
}

// missionMismatchRecorded checks that a ConsumeApproval was refused with
// approval-mission, consumed nothing, and wrote exactly one event, which
// the result carries: an ir.approval_invalid v2 with reason
// mission_mismatch for the approval's tenant (t1), naming the approval,
// its IR and the presented values in extra.
func missionMismatchRecorded(t *testing.T, env *dt.Env, id string, res aggregates.Result[governance.ApprovalState], err error, extra map[string]any) {
	t.Helper()
	if !errors.Is(err, governance.ErrApprovalMission) {
		t.Fatalf("error = %v, want %v", err, governance.ErrApprovalMission)
	}
	var re *aggregates.RuleError
	if !errors.As(err, &re) || re.Aggregate != governance.ApprovalAggregate || re.ID != id {
		t.Fatalf("%v does not name the approval", err)
	}
	e := lastEvent(t, env, "approval-"+id)
	if len(res.Events) != 1 || res.Events[0].ID != e.ID {
		t.Fatalf("the refusal returned %d events, want the one it recorded", len(res.Events))
	}
	if e.Type != governance.TypeApprovalInvalid || e.Meta.SchemaVersion != 2 || e.Meta.TenantID != "t1" {
		t.Fatalf("recorded %s v%d for tenant %s, want %s v2 for t1", e.Type, e.Meta.SchemaVersion, e.Meta.TenantID, governance.TypeApprovalInvalid)
	}
	want := map[string]any{"approval_id": id, "ir_id": "ir-1", "reason": string(governance.ReasonMissionMismatch)}
	for k, v := range extra {
		want[k] = v
	}
	if got := payloadMap(t, e.Payload); !reflect.DeepEqual(got, want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	if st, err := env.Governance.ApprovalStatus(ctx, id); err != nil || st.Consumed {
		t.Fatalf("the refused approval is consumed (%v)", err)
	}
}

// A tenant naming another tenant's approval learns nothing, not even that
// it exists: ConsumeApproval answers it exactly as for an approval id no
// approval has (the same rule, message and empty result), whatever the
// approval's state and the token presented, while the attempt is recorded
// for the approval's tenant (tenant_mismatch). Before, the refusal was
// approval-tenant, "presented by another tenant": proof that the id was
// an approval. CreateApproval with the id is refused (approval ids are one
// namespace) with nothing of the approval: before, the refusal named its
// IR and the result carried it as loaded.
func TestAnotherTenantsApprovalIsAnsweredAsUnknown(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	// answer is what t2 is told for id, with the id itself masked.
	type answer struct {
		Rule, Aggregate, ID, Message string
		Result                       aggregates.Result[governance.ApprovalState]
	}
	answerFor := func(id, token string) answer {
		t.Helper()
		res, err := env.Governance.ConsumeApproval(ctx, tenant("t2"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "mallory"})
		var re *aggregates.RuleError
		if !errors.As(err, &re) {
			t.Fatalf("consume %s: %v, want a *aggregates.RuleError", id, err)
		}
		mask := func(s string) string { return strings.ReplaceAll(s, id, "<id>") }
		return answer{re.Rule, re.Aggregate, mask(re.ID), mask(re.Error()), res}
	}
	want := answerFor(uuid.NewString(), "guess")
	if want.Rule != governance.ErrUnknownApproval.Rule || want.Result.Aggregate != nil || len(want.Result.Events) != 0 {
		t.Fatalf("an unknown approval is answered %+v", want)
	}

	errRecorded := errors.New("recorded")
	fresh, freshToken := newApproval(t, env)
	used, usedToken := newApproval(t, env)
	if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: used, Token: usedToken, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, id, token string }{
		{"unused, right token", fresh, freshToken},
		{"unused, wrong token", fresh, "guess"},
		{"consumed", used, usedToken},
	} {
		if got := answerFor(c.id, c.token); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: another tenant is answered\n%+v\nnot as for an unknown approval\n%+v", c.what, got, want)
		}
		// The answer was checked above; the record is the approval tenant's.
		checkInvalid(t, env, errRecorded, c.id, errRecorded, governance.ReasonTenantMismatch, "t1")
	}
	if st, err := env.Governance.ApprovalStatus(ctx, fresh); err != nil || st.Consumed {
		t.Fatalf("another tenant's attempt consumed the approval (%v)", err)
	}

	st, err := env.Governance.ApprovalStatus(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	token, res, err := env.Governance.CreateApproval(ctx, tenant("t2"), governance.CreateApproval{ApprovalID: fresh, IRID: "ir-2"}, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrApprovalExists)
	if token != "" || res.Aggregate != nil || len(res.Events) != 0 || strings.Contains(err.Error(), st.IRID) {
		t.Fatalf("creating another tenant's approval id tells about it: token %q, %v, %+v", token, err, res)
	}
	// Its own tenant is still told which IR the id is an approval for.
	_, res, err = env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: fresh, IRID: "ir-2"}, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrApprovalExists)
	if !strings.Contains(err.Error(), st.IRID) || res.Aggregate == nil {
		t.Fatalf("the approval's tenant: %v, %+v", err, res)
	}
}

// An approval is consumed at most once, whatever mission its consumers
// name: one created for no mission and consumed for a first mission is
// refused to a second consumption naming another mission, or none
// (already consumed, recorded as such and nothing else written), and stays
// bound to the first mission, so that a single approval never authorises
// several missions of its tenant.
func TestApprovalForNoMissionConsumedOnce(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, first := uuid.NewString(), uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, tenant("t1"), governance.CreateApproval{ApprovalID: id, IRID: "ir-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, MissionID: first}); err != nil {
		t.Fatal(err)
	}
	for _, mission := range []string{uuid.NewString(), ""} {
		before := dt.Types(t, env.Store, "approval-"+id)
		res, err := env.Governance.ConsumeApproval(ctx, tenant("t1"), governance.ConsumeApproval{ApprovalID: id, Token: token, ConsumedBy: "bob", MissionID: mission})
		checkInvalid(t, env, err, id, governance.ErrAlreadyConsumed, governance.ReasonAlreadyConsumed, "t1")
		var re *aggregates.RuleError
		if !errors.As(err, &re) || re.Aggregate != governance.ApprovalAggregate || re.ID != id {
			t.Fatalf("mission %q: %v is not a refusal naming the approval", mission, err)
		}
		if got, want := dt.Types(t, env.Store, "approval-"+id), append(before, governance.TypeApprovalInvalid); !slices.Equal(got, want) {
			t.Fatalf("mission %q: the approval's stream went from %v to %v, want only the record", mission, before, got)
		}
		if len(res.Events) != 1 || res.Events[0].Type != governance.TypeApprovalInvalid {
			t.Fatalf("mission %q: the refusal returned %v", mission, res.Events)
		}
	}
	st, err := env.Governance.ApprovalStatus(ctx, id)
	if err != nil || !st.Consumed || st.MissionID != first {
		t.Fatalf("the approval is %+v (%v), want consumed for mission %s", st, err, first)
	}
}

// A tenant sweeping another tenant's approval learns nothing, not even
// that it exists: ExpireApproval answers it exactly as for an approval id
// no approval has (the same *aggregates.NotFoundError, message and empty
// result), whatever the approval's state, also when the sweep reuses the
// command id of the approval's tenant, and writes nothing. A sweeper
// sweeps as the approval's tenant, which the approval's events name.
// Before, another tenant was told expire-after-expiry, approval-single-use
// or ErrCommandReused, or expired the approval (a no-op on one already
// expired): proof that the id was an approval.
func TestAnotherTenantsExpireApprovalIsAnsweredAsUnknown(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			// answer is what t2 is told for id, with the id itself masked.
			type answer struct {
				Type, Message, Result string
				NotFound              bool
			}
			answerFor := func(meta aggregates.CommandMeta, id string) answer {
				t.Helper()
				before := dt.Head(t, env.Store)
				res, err := env.Governance.ExpireApproval(ctx, meta, id)
				if err == nil {
					t.Fatalf("expire %s as %s: accepted with %d events", id, meta.TenantID, len(res.Events))
				}
				if after := dt.Head(t, env.Store); after != before {
					t.Fatalf("expire %s as %s: the log moved from %s to %s", id, meta.TenantID, before, after)
				}
				result, jerr := json.Marshal(res)
				if jerr != nil {
					t.Fatal(jerr)
				}
				mask := func(s string) string { return strings.ReplaceAll(s, id, "<id>") }
				return answer{fmt.Sprintf("%T", err), mask(err.Error()), mask(string(result)), errors.Is(err, aggregates.ErrNotFound)}
			}
			t2 := aggregates.CommandMeta{TenantID: "t2"}
			want := answerFor(t2, uuid.NewString())
			if !want.NotFound {
				t.Fatalf("an unknown approval is answered %+v", want)
			}
			check := func(what string, meta aggregates.CommandMeta, id string) {
				t.Helper()
				if got := answerFor(meta, id); got != want {
					t.Fatalf("%s: another tenant's sweep is answered\n%+v\nnot as for an unknown approval\n%+v", what, got, want)
				}
			}

			unused, _ := newApproval(t, env)
			check("unused, not yet expired", t2, unused)

			consumed, token := newApproval(t, env)
			consume := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
			if _, err := env.Governance.ConsumeApproval(ctx, consume, governance.ConsumeApproval{ApprovalID: consumed, Token: token, ConsumedBy: "alice"}); err != nil {
				t.Fatal(err)
			}
			expired, _ := newApproval(t, env)
			env.Clock.Advance(2 * time.Hour)
			if _, err := env.Governance.ExpireApproval(ctx, tenant("t1"), expired); err != nil {
				t.Fatal(err)
			}
			check("unused, past its expiry", t2, unused)
			check("consumed", t2, consumed)
			check("already expired", t2, expired)
			check("reusing the command id of the consumption", aggregates.CommandMeta{TenantID: "t2", ID: consume.ID}, consumed)

			// The approval's tenant still sweeps it, for itself.
			res, err := env.Governance.ExpireApproval(ctx, tenant("t1"), unused)
			if err != nil || len(res.Events) != 1 || res.Events[0].Type != governance.TypeApprovalExpired || res.Events[0].Meta.TenantID != "t1" {
				t.Fatalf("the approval's tenant sweeping it: %v, %v", err, res.Events)
			}
		})
	}
}

// TestApprovalRetriedWithAServiceMadeTokenSaysWhy: a CreateApproval whose
// token the service made cannot be answered again (only the token's hash
// is stored, and the retry makes a new token), so its retry with the same
// command id is refused with ErrApprovalExists saying so, not with
// ErrCommandReused, which told the client it had given one id to two
// commands. A retry that carries the first call's Token and ExpiresAt
// gets the first answer.
func TestApprovalRetriedWithAServiceMadeTokenSaysWhy(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	meta := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
	create := governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", MissionID: uuid.NewString(), RequestedBy: "planner"}
	token, first, err := env.Governance.CreateApproval(ctx, meta, create, time.Hour)
	if err != nil || token == "" {
		t.Fatalf("create: %q, %v", token, err)
	}
	before := dt.Head(t, env.Store)
	again, res, err := env.Governance.CreateApproval(ctx, meta, create, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrApprovalExists)
	if errors.Is(err, aggregates.ErrCommandReused) || !strings.Contains(err.Error(), "Token") || again != "" {
		t.Fatalf("retry with a service-made token: %q, %v; want ErrApprovalExists naming Token, not ErrCommandReused", again, err)
	}
	if res.Aggregate == nil || res.Aggregate.State.IRID != "ir-1" {
		t.Fatalf("the refusal's result: %+v, want the approval as loaded", res)
	}

	// Made retry-safe: the caller's own token and expiry.
	meta.ID = uuid.New()
	create.ApprovalID, create.Token, create.ExpiresAt = uuid.NewString(), "a-token-of-the-callers-own-0123456789", env.Clock.T.Add(time.Hour)
	if _, first, err = env.Governance.CreateApproval(ctx, meta, create, time.Hour); err != nil {
		t.Fatal(err)
	}
	env.Clock.Advance(time.Minute)
	token, res, err = env.Governance.CreateApproval(ctx, meta, create, time.Hour)
	if err != nil || token != create.Token || len(res.Events) != 1 || res.Events[0].ID != first.Events[0].ID {
		t.Fatalf("retry with the caller's token and expiry: %q, %v, %v; want the first answer", token, err, res.Events)
	}
}

// Whether a retried CreateApproval created the approval is read from
// where its command id landed, not from the approval's version: an id
// someone probed before it was created (recorded as unknown_approval)
// has its ir.approval_created at v2. The retry of the command that
// created it is refused with ErrApprovalExists saying why; a command id
// that landed as the probe, sent again as a CreateApproval, is
// ErrCommandReused, since it created nothing. Before, the first was
// ErrCommandReused and the second was told that it had created the
// approval and its token could not be given again.
func TestApprovalRetriedWithAServiceMadeTokenAfterAProbeSaysWhy(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	probe := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
	meta := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
	create := governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", MissionID: uuid.NewString(), RequestedBy: "planner"}
	_, err := env.Governance.ConsumeApproval(ctx, probe, governance.ConsumeApproval{ApprovalID: create.ApprovalID, Token: "guess"})
	checkInvalid(t, env, err, create.ApprovalID, governance.ErrUnknownApproval, governance.ReasonUnknownApproval, "t1")
	token, first, err := env.Governance.CreateApproval(ctx, meta, create, time.Hour)
	if err != nil || token == "" || first.Events[0].Version != 2 {
		t.Fatalf("create: %q, %v, %v", token, err, first.Events)
	}

	before := dt.Head(t, env.Store)
	again, res, err := env.Governance.CreateApproval(ctx, meta, create, time.Hour)
	dt.Refused(t, env.Store, before, err, governance.ErrApprovalExists)
	if errors.Is(err, aggregates.ErrCommandReused) || !strings.Contains(err.Error(), "Token") || again != "" {
		t.Fatalf("retry with a service-made token: %q, %v; want ErrApprovalExists naming Token, not ErrCommandReused", again, err)
	}
	if res.Aggregate == nil || res.Aggregate.State.IRID != "ir-1" {
		t.Fatalf("the refusal's result: %+v, want the approval as loaded", res)
	}

	// The probe's command id created nothing.
	again, _, err = env.Governance.CreateApproval(ctx, probe, create, time.Hour)
	dt.Refused(t, env.Store, before, err, aggregates.ErrCommandReused)
	if errors.Is(err, governance.ErrApprovalExists) || again != "" {
		t.Fatalf("the probe's command id as a CreateApproval: %q, %v; want ErrCommandReused only", again, err)
	}
	var reused *aggregates.CommandReusedError
	if !errors.As(err, &reused) || reused.Version != 1 {
		t.Fatalf("the probe's command id as a CreateApproval: %v; want it named as landed at v1", err)
	}
}

// readsFailFrom is a store whose stream reads from version from on fail
// as an outage does, once armed: the read CreateApproval makes, after a
// retry was refused as a reused command id, of the event the id landed as.
type readsFailFrom struct {
	eventstore.Store
	from   int64
	mu     sync.Mutex
	on     bool
	failed int
}

func (s *readsFailFrom) arm() { s.mu.Lock(); s.on = true; s.mu.Unlock() }

func (s *readsFailFrom) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]eventstore.Event, error) {
	s.mu.Lock()
	fail := s.on && from >= s.from
	if fail {
		s.failed++
	}
	s.mu.Unlock()
	if fail {
		return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrUnavailable)
	}
	return s.Store.ReadStream(ctx, stream, from, limit)
}

// A CreateApproval retried after the service made its token, whose read
// of the event its command id landed as fails (the database went away),
// does not know whether the command created the approval: it returns the
// read's error (eventstore.ErrUnavailable: retry later), not
// ErrCommandReused, which says that the id was given to another command
// and is no answer to retry. Before, a failed read counted as "not
// created" and the creator's own retry got ErrCommandReused.
func TestApprovalRetryWhoseLandingCannotBeReadIsUnavailable(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	st := &readsFailFrom{Store: env.Store, from: 2}
	reg, err := domain.NewRegistry(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := governance.New(st, reg, governance.Options{})
	if err != nil {
		t.Fatal(err)
	}
	probe := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
	meta := aggregates.CommandMeta{TenantID: "t1", ID: uuid.New()}
	create := governance.CreateApproval{ApprovalID: uuid.NewString(), IRID: "ir-1", MissionID: uuid.NewString(), RequestedBy: "planner"}
	if _, err := svc.ConsumeApproval(ctx, probe, governance.ConsumeApproval{ApprovalID: create.ApprovalID, Token: "guess"}); !errors.Is(err, governance.ErrUnknownApproval) {
		t.Fatalf("probe: %v", err)
	}
	token, first, err := svc.CreateApproval(ctx, meta, create, time.Hour)
	if err != nil || token == "" || first.Events[0].Version != 2 {
		t.Fatalf("create: %q, %v, %v", token, err, first.Events)
	}

	before := dt.Head(t, env.Store)
	st.arm()
	again, _, err := svc.CreateApproval(ctx, meta, create, time.Hour)
	if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, aggregates.ErrCommandReused) || errors.Is(err, governance.ErrApprovalExists) || again != "" {
		t.Fatalf("retry whose landed event cannot be read: %q, %v; want eventstore.ErrUnavailable only", again, err)
	}
	if st.failed == 0 {
		t.Fatal("no read failed: the test did not reach the read it is about")
	}
	if after := dt.Head(t, env.Store); after != before {
		t.Fatalf("the retry wrote: head %s, want %s", after, before)
	}
}
