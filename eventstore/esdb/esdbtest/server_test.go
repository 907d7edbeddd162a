package esdbtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
)

// These tests drive the protocol stand-in with the real EventStoreDB Go
// client over a real gRPC connection. They check that the stand-in follows
// EventStoreDB's documented semantics; they say nothing about EventStoreDB
// itself.

func standIn(t *testing.T, opts ...esdbtest.Option) (*esdbtest.Server, *client.Client) {
	t.Helper()
	srv, err := esdbtest.Start(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cfg, err := client.ParseConnectionString(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = client.NoopLogging()
	c, err := client.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func event(typ string) client.EventData {
	return client.EventData{EventID: uuid.New(), EventType: typ, ContentType: client.ContentTypeJson, Data: []byte(`{"a":1}`), Metadata: []byte(`{"m":true}`)}
}

func appendTo(t *testing.T, c *client.Client, stream string, exp client.ExpectedRevision, evs ...client.EventData) *client.WriteResult {
	t.Helper()
	res, err := c.AppendToStream(t.Context(), stream, client.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func wantWrongVersion(t *testing.T, err error, current string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Code() != client.ErrorCodeWrongExpectedVersion {
		t.Fatalf("error %v: want ErrorCodeWrongExpectedVersion", err)
	}
	if want := "but got '" + current + "'"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func readStream(t *testing.T, c *client.Client, stream string, opts client.ReadStreamOptions, count uint64) ([]*client.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(t.Context(), stream, opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*client.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func readAll(t *testing.T, c *client.Client, opts client.ReadAllOptions, count uint64) ([]*client.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadAll(t.Context(), opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*client.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestProtocolStandIn_ExpectedRevision(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()

	// no_stream: only a stream without events.
	res := appendTo(t, c, "s", client.NoStream{}, event("a"), event("b"))
	if res.NextExpectedVersion != 1 {
		t.Fatalf("revision after two events = %d, want 1", res.NextExpectedVersion)
	}
	_, err := c.AppendToStream(ctx, "s", client.AppendToStreamOptions{ExpectedRevision: client.NoStream{}}, event("c"))
	wantWrongVersion(t, err, "1")

	// stream_exists: refused on a missing stream, accepted on one that has events.
	_, err = c.AppendToStream(ctx, "missing", client.AppendToStreamOptions{ExpectedRevision: client.StreamExists{}}, event("a"))
	wantWrongVersion(t, err, "no_stream")
	appendTo(t, c, "s", client.StreamExists{}, event("c"))

	// exact revision: the last event's revision, from 0.
	for _, r := range []uint64{0, 1, 3, 1 << 40} {
		_, err = c.AppendToStream(ctx, "s", client.AppendToStreamOptions{ExpectedRevision: client.Revision(r)}, event("d"))
		wantWrongVersion(t, err, "2")
	}
	_, err = c.AppendToStream(ctx, "missing", client.AppendToStreamOptions{ExpectedRevision: client.Revision(0)}, event("a"))
	wantWrongVersion(t, err, "no_stream")
	res = appendTo(t, c, "s", client.Revision(2), event("d"))
	if res.NextExpectedVersion != 3 {
		t.Fatalf("revision = %d, want 3", res.NextExpectedVersion)
	}

	// any: always.
	res = appendTo(t, c, "s", client.Any{}, event("e"))
	if res.NextExpectedVersion != 4 {
		t.Fatalf("revision = %d, want 4", res.NextExpectedVersion)
	}
	evs, err := readStream(t, c, "s", client.ReadStreamOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("stream has %d events after refused appends, want 5", len(evs))
	}
	if _, err := readStream(t, c, "missing", client.ReadStreamOptions{}, 10); err == nil {
		t.Fatal("refused appends created the stream")
	}
}

func TestProtocolStandIn_Idempotency(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()
	a, b, x := event("a"), event("b"), event("x")
	first := appendTo(t, c, "i", client.NoStream{}, a, b)
	appendTo(t, c, "i", client.Revision(1), x)

	// Same ids, same expected revision: acknowledged with the original
	// revision and position, nothing written.
	again := appendTo(t, c, "i", client.NoStream{}, a, b)
	if again.NextExpectedVersion != first.NextExpectedVersion || again.CommitPosition != first.CommitPosition {
		t.Fatalf("retry answered revision %d position %d, want the original %d %d",
			again.NextExpectedVersion, again.CommitPosition, first.NextExpectedVersion, first.CommitPosition)
	}
	// any: idempotent on the ids of this stream.
	again = appendTo(t, c, "i", client.Any{}, a, b)
	if again.NextExpectedVersion != 1 {
		t.Fatalf("retry with any answered revision %d, want 1", again.NextExpectedVersion)
	}
	// A prefix of the original batch is a retry too.
	if again = appendTo(t, c, "i", client.NoStream{}, a); again.NextExpectedVersion != 0 {
		t.Fatalf("retry of a prefix answered revision %d, want 0", again.NextExpectedVersion)
	}
	// Some ids stored, some not: corrupted idempotency, answered as wrong
	// expected version, for any and for an exact revision.
	_, err := c.AppendToStream(ctx, "i", client.AppendToStreamOptions{ExpectedRevision: client.Any{}}, a, event("new"))
	wantWrongVersion(t, err, "2")
	_, err = c.AppendToStream(ctx, "i", client.AppendToStreamOptions{ExpectedRevision: client.NoStream{}}, a, event("new"))
	wantWrongVersion(t, err, "2")
	// The first id differs from the event after the expected revision:
	// a plain wrong expected version.
	_, err = c.AppendToStream(ctx, "i", client.AppendToStreamOptions{ExpectedRevision: client.Revision(0)}, a)
	wantWrongVersion(t, err, "2")
	// Ids are per stream: the same id in another stream is a new event.
	if res := appendTo(t, c, "i-other", client.Any{}, a); res.NextExpectedVersion != 0 {
		t.Fatalf("same id in another stream: revision %d, want 0", res.NextExpectedVersion)
	}
	evs, err := readStream(t, c, "i", client.ReadStreamOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("stream has %d events after retries, want 3", len(evs))
	}
}

func TestProtocolStandIn_ReadStream(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	var ids []uuid.UUID
	for range 5 {
		e := event("a")
		ids = append(ids, e.EventID)
		appendTo(t, c, "r", client.Any{}, e)
	}
	check := func(what string, evs []*client.ResolvedEvent, want ...int) {
		t.Helper()
		if len(evs) != len(want) {
			t.Fatalf("%s: %d events, want %d", what, len(evs), len(want))
		}
		for i, w := range want {
			got := evs[i].OriginalEvent()
			if got.EventID != ids[w] || got.EventNumber != uint64(w) || got.StreamID != "r" {
				t.Fatalf("%s[%d]: %s@%d %s, want r@%d %s", what, i, got.StreamID, got.EventNumber, got.EventID, w, ids[w])
			}
		}
	}
	evs, err := readStream(t, c, "r", client.ReadStreamOptions{From: client.Revision(2)}, 2)
	if err != nil {
		t.Fatal(err)
	}
	check("forwards from 2", evs, 2, 3)
	evs, _ = readStream(t, c, "r", client.ReadStreamOptions{Direction: client.Backwards, From: client.End{}}, 2)
	check("backwards from end", evs, 4, 3)
	evs, _ = readStream(t, c, "r", client.ReadStreamOptions{Direction: client.Backwards, From: client.Revision(1)}, 10)
	check("backwards from 1", evs, 1, 0)
	// Past the end of a stream that exists: no events, no error.
	evs, err = readStream(t, c, "r", client.ReadStreamOptions{From: client.Revision(5)}, 10)
	if err != nil || len(evs) != 0 {
		t.Fatalf("read past the end: %d events, %v; want none and no error", len(evs), err)
	}
	// A stream that does not exist: stream not found, from any revision.
	for _, from := range []client.StreamPosition{client.Start{}, client.Revision(3)} {
		_, err = readStream(t, c, "nope", client.ReadStreamOptions{From: from}, 10)
		var e *client.Error
		if !errors.As(err, &e) || e.Code() != client.ErrorCodeResourceNotFound {
			t.Fatalf("read of a missing stream: %v, want ErrorCodeResourceNotFound", err)
		}
	}
	// The event as written: type, content type, data, metadata, created.
	evs, _ = readStream(t, c, "r", client.ReadStreamOptions{}, 1)
	e := evs[0].OriginalEvent()
	if e.EventType != "a" || e.ContentType != "application/json" || string(e.Data) != `{"a":1}` || string(e.UserMetadata) != `{"m":true}` {
		t.Fatalf("event read back as type %q content type %q data %s metadata %s", e.EventType, e.ContentType, e.Data, e.UserMetadata)
	}
	if d := time.Since(e.CreatedDate); d < 0 || d > time.Minute {
		t.Fatalf("created %v, want about now", e.CreatedDate)
	}
}

func TestProtocolStandIn_ReadAllOrder(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	var want []uuid.UUID
	for i := range 6 {
		a, b := event("a"), event("b")
		appendTo(t, c, fmt.Sprintf("s-%d", i%2), client.Any{}, a, b)
		want = append(want, a.EventID, b.EventID)
	}
	evs, err := readAll(t, c, client.ReadAllOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(want) {
		t.Fatalf("$all has %d events, want %d", len(evs), len(want))
	}
	var prev client.Position
	for i, ev := range evs {
		e := ev.OriginalEvent()
		if e.EventID != want[i] {
			t.Fatalf("$all[%d] is %s, want %s (append order)", i, e.EventID, want[i])
		}
		p := e.Position
		if i > 0 && (p.Commit < prev.Commit || (p.Commit == prev.Commit && p.Prepare <= prev.Prepare)) {
			t.Fatalf("$all positions not increasing: %v then %v", prev, p)
		}
		if p.Commit == 0 {
			t.Fatal("an event at commit position 0, which the client reserves for the start")
		}
		prev = p
	}
	// From a position: inclusive forwards, exclusive backwards.
	mid := evs[5].OriginalEvent().Position
	fwd, _ := readAll(t, c, client.ReadAllOptions{From: mid}, 2)
	if len(fwd) != 2 || fwd[0].OriginalEvent().EventID != want[5] {
		t.Fatalf("forwards from the 6th event's position does not start with it")
	}
	back, _ := readAll(t, c, client.ReadAllOptions{From: mid, Direction: client.Backwards}, 2)
	if len(back) != 2 || back[0].OriginalEvent().EventID != want[4] || back[1].OriginalEvent().EventID != want[3] {
		t.Fatalf("backwards from the 6th event's position does not start with the 5th")
	}
	last, _ := readAll(t, c, client.ReadAllOptions{From: client.End{}, Direction: client.Backwards}, 1)
	if len(last) != 1 || last[0].OriginalEvent().EventID != want[len(want)-1] {
		t.Fatal("backwards from the end does not start with the last event")
	}
	// A prepare position above the commit position: refused, as
	// EventStoreDB's Position refuses it; for a subscription too.
	if _, err := readAll(t, c, client.ReadAllOptions{From: client.Position{Commit: mid.Commit, Prepare: mid.Prepare + 1}}, 1); err == nil ||
		!strings.Contains(err.Error(), "commit position cannot be less than the prepare position") {
		t.Fatalf("read from (commit, commit+1): %v, want a refusal", err)
	}
	if _, err := c.SubscribeToAll(t.Context(), client.SubscribeToAllOptions{From: client.Position{Commit: mid.Commit, Prepare: mid.Prepare + 1}}); err == nil {
		t.Fatal("subscription from (commit, commit+1) accepted")
	}
	// Inside a record: refused, as EventStoreDB refuses it.
	if _, err := readAll(t, c, client.ReadAllOptions{From: client.Position{Commit: mid.Commit + 1, Prepare: mid.Commit + 1}}, 1); err == nil ||
		!strings.Contains(err.Error(), "invalid position") {
		t.Fatalf("read from inside a record: %v, want an invalid position error", err)
	}
	// A subscription is confirmed first, then fails when it reads from
	// the position (EventStoreDB 24.2 on: kurrent-io/KurrentDB#4057, #4128).
	inside, err := c.SubscribeToAll(t.Context(), client.SubscribeToAllOptions{From: client.Position{Commit: mid.Commit + 1, Prepare: mid.Commit + 1}})
	if err != nil {
		t.Fatalf("subscription from inside a record: %v, want a confirmation, then the refusal", err)
	}
	defer inside.Close()
	for {
		e := inside.Recv()
		if e.EventAppeared != nil {
			t.Fatalf("subscription from inside a record delivered %s", e.EventAppeared.OriginalEvent().EventID)
		}
		if e.SubscriptionDropped != nil {
			if err := e.SubscriptionDropped.Error; err == nil || !strings.Contains(err.Error(), "invalid position") {
				t.Fatalf("subscription from inside a record dropped with %v, want an invalid position error", err)
			}
			break
		}
	}
	// The last event's own position is a valid start.
	end := evs[len(evs)-1].OriginalEvent().Position
	if got, err := readAll(t, c, client.ReadAllOptions{From: end}, 5); err != nil || len(got) != 1 {
		t.Fatalf("read from the last event: %d events, %v; want 1", len(got), err)
	}
}

func TestProtocolStandIn_SubscribeToAll(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()
	first := event("keep")
	appendTo(t, c, "x", client.Any{}, first, event("drop"))
	evs, _ := readAll(t, c, client.ReadAllOptions{}, 10)
	firstPos := evs[0].OriginalEvent().Position

	// From a position: exclusive. With an event-type filter: only those.
	sub, err := c.SubscribeToAll(ctx, client.SubscribeToAllOptions{
		From:   firstPos,
		Filter: &client.SubscriptionFilter{Type: client.EventFilterType, Regex: `^keep$`},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	all, err := c.SubscribeToAll(ctx, client.SubscribeToAllOptions{From: client.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()

	live := event("keep")
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = c.AppendToStream(ctx, "y", client.AppendToStreamOptions{}, event("drop"), live)
	}()
	next := func(s *client.Subscription) *client.RecordedEvent {
		t.Helper()
		for {
			e := s.Recv()
			switch {
			case e.SubscriptionDropped != nil:
				t.Fatalf("subscription dropped: %v", e.SubscriptionDropped.Error)
			case e.EventAppeared != nil:
				return e.EventAppeared.OriginalEvent()
			}
		}
	}
	if got := next(sub); got.EventID != live.EventID {
		t.Fatalf("filtered subscription from the first event delivered %s %s, want the live keep %s", got.EventType, got.EventID, live.EventID)
	}
	var got []string
	for range 4 {
		got = append(got, next(all).EventType)
	}
	if strings.Join(got, ",") != "keep,drop,drop,keep" {
		t.Fatalf("subscription from the start delivered %v", got)
	}

	// From a position beyond the end of the log: EventStoreDB skips the
	// events written up to it (Enumerator.AllSubscription.GoLive).
	evs, _ = readAll(t, c, client.ReadAllOptions{From: client.End{}, Direction: client.Backwards}, 1)
	beyond := evs[0].OriginalEvent().Position.Commit + 4096
	ahead, err := c.SubscribeToAll(ctx, client.SubscribeToAllOptions{From: client.Position{Commit: beyond, Prepare: beyond}})
	if err != nil {
		t.Fatal(err)
	}
	defer ahead.Close()
	big := event("big")
	big.Data = []byte(`"` + strings.Repeat("x", 8192) + `"`)
	after := event("after")
	appendTo(t, c, "z", client.Any{}, big, after)
	if got := next(ahead); got.EventID != after.EventID {
		t.Fatalf("subscription from beyond the end delivered %s at %v first, want the first event after %d", got.EventType, got.Position, beyond)
	}
}

func TestProtocolStandIn_MaxAppendSize(t *testing.T) {
	t.Parallel()
	_, c := standIn(t, esdbtest.MaxAppendSize(4096))
	big := event("a")
	big.Data = []byte(`{"a":"` + strings.Repeat("x", 5000) + `"}`)
	_, err := c.AppendToStream(t.Context(), "big", client.AppendToStreamOptions{}, big)
	if err == nil || !strings.Contains(err.Error(), "Maximum Append Size of 4096 Exceeded") {
		t.Fatalf("append over the limit: %v, want Maximum Append Size of 4096 Exceeded", err)
	}
	if _, err := readStream(t, c, "big", client.ReadStreamOptions{}, 1); err == nil {
		t.Fatal("refused append wrote the stream")
	}
}

func TestProtocolStandIn_ClusterDiscovery(t *testing.T) {
	t.Parallel()
	srv, err := esdbtest.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	// Two seeds make the client read gossip first and pick the leader.
	cfg, err := client.ParseConnectionString("esdb://" + srv.Addr() + "," + srv.Addr() + "?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = client.NoopLogging()
	c, err := client.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	appendTo(t, c, "g", client.NoStream{}, event("a"))
	v, err := c.GetServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != 0 || v.Minor != 0 || v.Patch != 0 {
		t.Fatalf("server version %+v, want 0.0.0", v)
	}
}

func TestProtocolStandIn_StopEndsSubscriptions(t *testing.T) {
	t.Parallel()
	srv, c := standIn(t)
	sub, err := c.SubscribeToAll(t.Context(), client.SubscribeToAllOptions{From: client.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	done := make(chan *client.SubscriptionDropped, 1)
	go func() {
		for {
			if e := sub.Recv(); e.SubscriptionDropped != nil {
				done <- e.SubscriptionDropped
				return
			}
		}
	}()
	srv.Stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("subscription still open after Stop")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.AppendToStream(ctx, "after-stop", client.AppendToStreamOptions{}, event("a")); err == nil {
		t.Fatal("append after Stop succeeded")
	}
}

// Stream metadata $tb, $maxCount and $maxAge hide a stream's first events
// from stream reads at once, as EventStoreDB does before any scavenge
// (kurrent-io/KurrentDB#2631: with TruncateBefore 81, a forward read from 0
// returns 81 on). The stream keeps its last revision, so appends go on
// numbering from it, and $all still holds every event.
func TestProtocolStandIn_StreamMetadataTrims(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	_, c := standIn(t, esdbtest.Clock(func() time.Time { return time.Unix(0, now.Load()) }))
	ctx := t.Context()
	numbers := func(evs []*client.ResolvedEvent) string {
		var b []string
		for _, e := range evs {
			b = append(b, fmt.Sprint(e.OriginalEvent().EventNumber))
		}
		return strings.Join(b, ",")
	}
	setMeta := func(stream string, set func(*client.StreamMetadata)) {
		t.Helper()
		var m client.StreamMetadata
		set(&m)
		if _, err := c.SetStreamMetadata(ctx, stream, client.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
	}
	read := func(stream string, opts client.ReadStreamOptions) string {
		t.Helper()
		evs, err := readStream(t, c, stream, opts, 100)
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		return numbers(evs)
	}
	for _, s := range []string{"tb", "count", "age", "gone"} {
		for range 5 {
			appendTo(t, c, s, client.Any{}, event("a"))
		}
	}
	now.Add(int64(2 * time.Minute))
	appendTo(t, c, "age", client.Any{}, event("a"), event("a"))

	setMeta("tb", func(m *client.StreamMetadata) { m.SetTruncateBefore(2) })
	setMeta("count", func(m *client.StreamMetadata) { m.SetMaxCount(2) })
	setMeta("age", func(m *client.StreamMetadata) { m.SetMaxAge(time.Minute) })
	setMeta("gone", func(m *client.StreamMetadata) { m.SetTruncateBefore(10) })
	for _, tc := range []struct {
		stream string
		opts   client.ReadStreamOptions
		want   string
	}{
		{"tb", client.ReadStreamOptions{}, "2,3,4"},
		{"tb", client.ReadStreamOptions{From: client.Revision(1)}, "2,3,4"},
		{"tb", client.ReadStreamOptions{From: client.Revision(3)}, "3,4"},
		{"tb", client.ReadStreamOptions{Direction: client.Backwards, From: client.End{}}, "4,3,2"},
		{"count", client.ReadStreamOptions{}, "3,4"},
		{"age", client.ReadStreamOptions{}, "5,6"},
		{"gone", client.ReadStreamOptions{}, ""},
		{"gone", client.ReadStreamOptions{Direction: client.Backwards, From: client.End{}}, ""},
	} {
		if got := read(tc.stream, tc.opts); got != tc.want {
			t.Fatalf("read %s %+v: revisions %q, want %q", tc.stream, tc.opts, got, tc.want)
		}
	}
	// The last revision does not move: an exact expected revision goes on
	// from it, and an expected revision below it is wrong.
	if res := appendTo(t, c, "tb", client.Revision(4), event("a")); res.NextExpectedVersion != 5 {
		t.Fatalf("append after revision 4 of a truncated stream: next expected %d, want 5", res.NextExpectedVersion)
	}
	_, err := c.AppendToStream(ctx, "gone", client.AppendToStreamOptions{ExpectedRevision: client.NoStream{}}, event("a"))
	wantWrongVersion(t, err, "4")
	if got := read("tb", client.ReadStreamOptions{}); got != "2,3,4,5" {
		t.Fatalf("truncated stream after an append: revisions %q, want 2,3,4,5", got)
	}
	// $all is not trimmed by stream metadata (only a scavenge removes
	// events from it, and the stand-in never scavenges).
	all, err := readAll(t, c, client.ReadAllOptions{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	perStream := map[string]int{}
	for _, e := range all {
		perStream[e.OriginalEvent().StreamID]++
	}
	if perStream["tb"] != 6 || perStream["count"] != 5 || perStream["age"] != 7 || perStream["gone"] != 5 {
		t.Fatalf("$all holds %v events per stream, want every event written", perStream)
	}
}

// stream_exists is satisfied by a stream that has events or, in
// EventStoreDB, by one that only has metadata: IndexWriter.CheckCommit
// answers wrong expected version to stream_exists only when the stream and
// its metadata stream ("$$"+stream) both have no events ("The stream
// should exist. If it or a metadata stream does not exist, treat that as a
// concurrency problem", ExpectedVersion.StreamExists in EventStoreDB's
// client API). The stand-in used to refuse it whenever the stream had no
// events.
func TestProtocolStandIn_StreamExistsWithMetadataOnly(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()
	_, err := c.AppendToStream(ctx, "m", client.AppendToStreamOptions{ExpectedRevision: client.StreamExists{}}, event("a"))
	wantWrongVersion(t, err, "no_stream")
	var md client.StreamMetadata
	md.SetMaxAge(time.Hour)
	if _, err := c.SetStreamMetadata(ctx, "m", client.AppendToStreamOptions{}, md); err != nil {
		t.Fatal(err)
	}
	res := appendTo(t, c, "m", client.StreamExists{}, event("a"))
	if res.NextExpectedVersion != 0 {
		t.Fatalf("stream_exists on a stream with metadata only: revision %d, want 0 (the stream's first event)", res.NextExpectedVersion)
	}
	if evs, err := readStream(t, c, "m", client.ReadStreamOptions{}, 10); err != nil || len(evs) != 1 {
		t.Fatalf("stream after the append: %d events, %v; want 1", len(evs), err)
	}
}

// An expected revision is any 64-bit event number: EventStoreDB answers a
// revision far past the stream's end as wrong expected version. The
// stand-in used to refuse revisions above 2^62 as an invalid argument.
func TestProtocolStandIn_HugeExpectedRevision(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()
	appendTo(t, c, "h", client.NoStream{}, event("a"))
	for _, r := range []uint64{1<<62 + 1, 1<<63 - 2} {
		_, err := c.AppendToStream(ctx, "h", client.AppendToStreamOptions{ExpectedRevision: client.Revision(r)}, event("b"))
		wantWrongVersion(t, err, "0")
		_, err = c.AppendToStream(ctx, "missing", client.AppendToStreamOptions{ExpectedRevision: client.Revision(r)}, event("b"))
		wantWrongVersion(t, err, "no_stream")
	}
}
