package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

func (s *suite) testEnvelope(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)

	t.Run("MetaAndTarget", func(t *testing.T) {
		t.Parallel()
		e := added("meta")
		e.ID = uuid.New()
		e.Target = "storetest-target"
		e.Source = "storetest-source"
		e.Meta = eventstore.Meta{
			SchemaVersion: 1,
			Producer:      "storetest/1.0",
			TenantID:      "tenant-meta",
			CorrelationID: "corr-1",
			CausationID:   "cause-1",
			Extra: map[string]any{
				"trace_id": "abc",
				"attempt":  3,
				"flags":    []any{true, false, nil},
				"nested":   map[string]any{"a": []any{1, "two"}, "b": 2.5},
			},
		}
		res := mustAppend(t, st, "envelope-meta", eventstore.NoStream, e)
		evs, err := st.ReadStream(ctx, "envelope-meta", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadStream", evs, res.Events)
		got := evs[0]
		if got.ID != e.ID || got.Target != e.Target || got.Source != e.Source || got.Type != e.Type {
			t.Fatalf("read back id %s target %q source %q type %q, want %s %q %q %q", got.ID, got.Target, got.Source, got.Type, e.ID, e.Target, e.Source, e.Type)
		}
		m := got.Meta
		if m.SchemaVersion != 1 || m.Producer != "storetest/1.0" || m.TenantID != "tenant-meta" || m.CorrelationID != "corr-1" || m.CausationID != "cause-1" {
			t.Fatalf("read back meta %+v", m)
		}
		if gm, wm := mustJSON(m), mustJSON(e.Meta); !eventstore.JSONEqual(gm, wm) {
			t.Fatalf("read back meta %s, want %s", gm, wm)
		}
		if len(m.Extra) != 4 {
			t.Fatalf("read back meta extra keys %v, want 4 keys", m.Extra)
		}
		// What the store returns is the caller's to keep: changing it does
		// not change what the store holds.
		evs[0].Payload[0] = ' '
		if evs[0].Meta.Extra != nil {
			evs[0].Meta.Extra["trace_id"] = "changed"
		}
		again, err := st.ReadStream(ctx, "envelope-meta", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadStream after changing a returned event", again, res.Events)
		if again[0].Meta.Extra["trace_id"] != "abc" {
			t.Fatalf("meta extra trace_id = %v after the caller changed a returned copy", again[0].Meta.Extra["trace_id"])
		}
	})
	t.Run("EmptyTargetAndOptionalMeta", func(t *testing.T) {
		t.Parallel()
		res := mustAppend(t, st, "envelope-min", eventstore.NoStream, added("min"))
		evs, err := st.ReadStream(ctx, "envelope-min", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadStream", evs, res.Events)
		m := evs[0].Meta
		if evs[0].Target != "" || m.Producer != "" || m.CorrelationID != "" || m.CausationID != "" || len(m.Extra) != 0 {
			t.Fatalf("read back target %q meta %+v: want empty optional fields", evs[0].Target, m)
		}
	})
	t.Run("StoreSetsTimestampVersionPosition", func(t *testing.T) {
		t.Parallel()
		before := time.Now()
		e := added("ts")
		e.Timestamp = time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("X", 3600))
		e.Version = 99
		e.Position = eventstore.Pos(12345)
		e.Stream = "some-other-stream"
		res := mustAppend(t, st, "envelope-ts", eventstore.NoStream, e, added("ts2"))
		after := time.Now()
		evs, err := st.ReadStream(ctx, "envelope-ts", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEvents(t, "ReadStream", evs, res.Events)
		for _, list := range [][]eventstore.Event{res.Events, evs} {
			for i, got := range list {
				if got.Timestamp.Location() != time.UTC {
					t.Fatalf("timestamp %v is in %v, want UTC", got.Timestamp, got.Timestamp.Location())
				}
				// A minute of slack either side: this checks the store set
				// the time, not how fast it did.
				if got.Timestamp.Before(before.Add(-time.Minute)) || got.Timestamp.After(after.Add(time.Minute)) {
					t.Fatalf("timestamp %v, want about %v", got.Timestamp, before.UTC())
				}
				if got.Version != int64(i)+1 || got.Stream != "envelope-ts" {
					t.Fatalf("event %d: stream %q version %d, want envelope-ts %d", i, got.Stream, got.Version, i+1)
				}
				if got.Position == eventstore.Pos(12345) || got.Position.IsZero() {
					t.Fatalf("event %d: position %v: the store must set it", i, got.Position)
				}
			}
		}
		if _, err := st.ReadStream(ctx, "some-other-stream", 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("event's own Stream field was used: %v", err)
		}
	})
}

func (s *suite) testClose(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	mustAppend(t, st, "close", eventstore.NoStream, added("a"))
	sub := subscribe(t, st, eventstore.SubscribeOptions{})
	if evs, err := sub.Next(ctx); err != nil || len(evs) != 1 {
		t.Fatalf("Next before Close: %d events, %v", len(evs), err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		blocked <- err
	}()
	time.Sleep(50 * time.Millisecond)

	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Next blocked across store Close: %v, want ErrClosed", err)
		}
	case <-time.After(liveness):
		t.Fatal("Next blocked across store Close did not return")
	}
	if _, err := sub.Next(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Next after store Close: %v, want ErrClosed", err)
	}
	if _, err := st.Append(ctx, "close", eventstore.Any, added("b")); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := st.ReadStream(ctx, "close", 0, 0); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("ReadStream after Close: %v, want ErrClosed", err)
	}
	if _, err := st.ReadAll(ctx, eventstore.ReadAllOptions{}); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("ReadAll after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Subscribe(ctx, eventstore.SubscribeOptions{}); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Head(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Head after Close: %v, want ErrClosed", err)
	}
	// A closed store says so before it looks at what a read asks for: a
	// read that can never succeed is not a validation error that the
	// caller might correct and send again.
	if _, err := st.ReadStream(ctx, "", 0, 0); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("ReadStream of an invalid stream id after Close: %v, want ErrClosed", err)
	}
	if _, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Types: []string{"Not A Type"}, TenantID: "\xff"}); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("ReadAll with invalid filters after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Append(ctx, "", eventstore.Any, added("b")); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Append to an invalid stream id after Close: %v, want ErrClosed", err)
	}
	if _, err := st.Subscribe(ctx, eventstore.SubscribeOptions{Types: []string{"Not A Type"}}); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe with an invalid filter after Close: %v, want ErrClosed", err)
	}
	st.Close() // a second Close must not panic
}
