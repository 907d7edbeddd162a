package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/schemas"
)

// TestMetricsCountWritesNoCallReported: an append whose caller's context
// ends while its group waits for the append lock returns the context's
// error and is counted as an error, yet its group then commits. Before,
// those events were in no metric as written (ok), and their retry counts
// as a retry; eventstream_events_unreported_total now counts them, so ok
// plus unreported is what the log gained.
func TestMetricsCountWritesNoCallReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Limits{})
	reg := prometheus.NewRegistry()
	m, err := server.NewMetrics(reg, schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	store := m.InstrumentStore(e.store)
	unreported := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "eventstream_events_unreported_total" {
				if len(mf.GetMetric()) != 1 {
					t.Fatalf("eventstream_events_unreported_total has %d series, want 1", len(mf.GetMetric()))
				}
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("eventstream_events_unreported_total not gathered")
		return 0
	}
	if got := unreported(); got != 0 {
		t.Fatalf("before any append: %v unreported events, want 0", got)
	}

	// Hold the append lock, so the append's group waits for it.
	ctx := context.Background()
	key := migrate.LockKey("append", e.store.Schema())
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	events := make([]eventstore.Event, 2)
	for i := range events {
		events[i] = eventstore.Event{
			ID: uuid.New(), Type: "course.generation.requested", Source: "test", Meta: eventstore.Meta{TenantID: "acme", SchemaVersion: schemas.MustDefault().Latest("course.generation.requested")},
			Payload: json.RawMessage(`{"course_id":"` + uuid.NewString() + `","topic":"Go","attempt":1,"language":"en"}`),
		}
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := store.Append(actx, "unreported", eventstore.NoStream, events...)
		done <- err
	}()
	// Wait until the group waits for the lock, then give up on it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND NOT l.granted AND a.query LIKE '%eventstream_append%'
			AND l.objid = ($1::bigint & 4294967295)::oid`, key).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the append returned before its group got the lock: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the append's group does not wait for the lock after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("append whose context ended while its group waited: %v, want context.Canceled", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		t.Fatal(err)
	}
	// The group commits once it has the lock; its retry finds it stored.
	if _, err := store.Append(ctx, "unreported", eventstore.NoStream, events...); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := e.logSize(); n != 2 {
		t.Fatalf("the log holds %d events, want 2", n)
	}
	if got := unreported(); got != 2 {
		t.Errorf("%v unreported events, want 2", got)
	}
	var text strings.Builder
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "eventstream_events_total") {
			for _, s := range mf.GetMetric() {
				text.WriteString(s.String() + "\n")
			}
		}
	}
	// The abandoned call counts as an error, its retry as a retry: no "ok".
	if strings.Contains(text.String(), `value:"ok"`) {
		t.Errorf("eventstream_events_total counts an ok write no call reported:\n%s", text.String())
	}
	if !strings.Contains(text.String(), `value:"error"`) || !strings.Contains(text.String(), `value:"retry"`) {
		t.Errorf("eventstream_events_total lacks the abandoned call's error or its retry:\n%s", text.String())
	}
}
