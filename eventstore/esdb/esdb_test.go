package esdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/schemas"
)

// The tests below pin what is particular to the esdb backend. They run on
// the protocol stand-in (esdbtest), not on EventStoreDB.

func registry(t *testing.T) *schemas.Registry {
	t.Helper()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func added(name string) eventstore.Event {
	return eventstore.Event{
		Type:    storetest.TypeAdded,
		Source:  "esdb-test",
		Payload: json.RawMessage(fmt.Sprintf(`{"name":%q}`, name)),
		Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "tenant-a"},
	}
}

func rawClient(t *testing.T, srv *esdbtest.Server) *client.Client {
	t.Helper()
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
	return c
}

func mustAppend(t *testing.T, st eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.Event) eventstore.AppendResult {
	t.Helper()
	res, err := st.Append(t.Context(), stream, exp, evs...)
	if err != nil {
		t.Fatalf("Append(%q): %v", stream, err)
	}
	return res
}

func readAll(t *testing.T, st eventstore.Store, opts eventstore.ReadAllOptions) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for range 10_000 {
		p, err := st.ReadAll(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Events...)
		if p.End {
			return out
		}
		opts.From = p.Next
	}
	t.Fatal("ReadAll never reached the end")
	return nil
}

func ids(evs []eventstore.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.ID.String()[:8])
		b.WriteByte(' ')
	}
	return b.String()
}

func TestStandIn_EventEncoding(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	e := added("x")
	e.Target = "somewhere"
	e.Meta.CorrelationID, e.Meta.CausationID, e.Meta.Producer = "corr", "cause", "test/1"
	e.Meta.Extra = map[string]any{"trace": "t"}
	res := mustAppend(t, st, "enc", eventstore.NoStream, e)

	rs, err := rawClient(t, srv).ReadStream(t.Context(), "enc", client.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	r := ev.OriginalEvent()
	if r.EventID != res.Events[0].ID || r.EventType != storetest.TypeAdded || r.ContentType != "application/json" || r.EventNumber != 0 {
		t.Fatalf("stored as id %s type %q content type %q revision %d", r.EventID, r.EventType, r.ContentType, r.EventNumber)
	}
	if string(r.Data) != `{"name":"x"}` {
		t.Fatalf("data %s, want the payload as given", r.Data)
	}
	var md map[string]any
	if err := json.Unmarshal(r.UserMetadata, &md); err != nil {
		t.Fatalf("metadata %s is not JSON: %v", r.UserMetadata, err)
	}
	meta, _ := md["meta"].(map[string]any)
	if md["source"] != "esdb-test" || md["target"] != "somewhere" || md["$correlationId"] != "corr" || md["$causationId"] != "cause" ||
		meta["tenant_id"] != "tenant-a" || meta["schema_version"] != float64(1) || meta["producer"] != "test/1" || meta["trace"] != "t" {
		t.Fatalf("metadata %s lacks an envelope field", r.UserMetadata)
	}
	if got, want := res.Events[0].Position, (eventstore.Position{Commit: r.Position.Commit, Prepare: r.Position.Prepare}); got != want {
		t.Fatalf("append result position %v, server position %v", got, want)
	}
	if !res.Events[0].Timestamp.Equal(r.CreatedDate) {
		t.Fatalf("append result timestamp %v, server created %v", res.Events[0].Timestamp, r.CreatedDate)
	}
}

// EventStoreDB checks ids per stream: the same id in another stream is a new
// event (Features.PerStreamIDs), unlike the PostgreSQL backend.
func TestStandIn_SameIDInAnotherStreamIsANewEvent(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	e := added("a")
	e.ID = uuid.New()
	first := mustAppend(t, st, "one", eventstore.NoStream, e)
	other := mustAppend(t, st, "two", eventstore.Any, e)
	if other.Events[0].ID != e.ID || other.Events[0].Position == first.Events[0].Position {
		t.Fatalf("second append: id %s at %v, want the same id at a new position", other.Events[0].ID, other.Events[0].Position)
	}
	if got := readAll(t, st, eventstore.ReadAllOptions{}); len(got) != 2 {
		t.Fatalf("$all has %d events, want 2", len(got))
	}
	if !st.Features().PerStreamIDs {
		t.Fatal("Features().PerStreamIDs = false")
	}
}

// A retry whose first id is stored where the append expected it, but whose
// later ids are new, is refused by EventStoreDB as "wrong expected version"
// (corrupted idempotency); the backend reports it as ErrDuplicateEvent, and
// keeps true conflicts as ErrConcurrency.
func TestStandIn_WrongVersionOrDuplicate(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	ctx := t.Context()
	a := added("a")
	a.ID = uuid.New()
	mustAppend(t, st, "s", eventstore.NoStream, a)
	mustAppend(t, st, "s", eventstore.Exact(1), added("b"))

	for _, exp := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Exact(0), eventstore.StreamExists, eventstore.Any} {
		_, err := st.Append(ctx, "s", exp, a, added("new"))
		var de *eventstore.DuplicateEventError
		if !errors.As(err, &de) || de.ID != a.ID.String() || de.Stream != "s" {
			t.Fatalf("expected %s, stored id then a new one: %v, want DuplicateEventError for %s", exp, err, a.ID)
		}
	}
	// The first id is not the event after the expected version: a conflict.
	_, err := st.Append(ctx, "s", eventstore.Exact(1), a)
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.Actual != 2 || ce.Expected != eventstore.Exact(1) {
		t.Fatalf("stored id at the wrong place: %v, want ConcurrencyError actual 2", err)
	}
	_, err = st.Append(ctx, "missing", eventstore.StreamExists, added("x"))
	if !errors.As(err, &ce) || ce.Actual != 0 {
		t.Fatalf("StreamExists on a missing stream: %v, want ConcurrencyError actual 0", err)
	}
	if evs, err := st.ReadStream(ctx, "s", 0, 0); err != nil || len(evs) != 2 {
		t.Fatalf("stream after refusals: %d events, %v; want 2", len(evs), err)
	}
}

func TestStandIn_AppendSize(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	batch := make([]eventstore.Event, 8000) // ~1.4 MB as EventStoreDB counts it
	for i := range batch {
		batch[i] = added(fmt.Sprint(i))
	}
	check := func(t *testing.T, st eventstore.Store, index int, rule string, events ...eventstore.Event) {
		t.Helper()
		_, err := st.Append(t.Context(), "big", eventstore.NoStream, events...)
		var ve *eventstore.ValidationError
		if !errors.As(err, &ve) || ve.Rule != rule || ve.Index != index {
			t.Fatalf("append over the limit: %v, want a validation error, index %d, rule %s", err, index, rule)
		}
		if _, err := st.ReadStream(t.Context(), "big", 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("refused append wrote: %v", err)
		}
	}
	t.Run("RefusedBeforeSending", func(t *testing.T) {
		t.Parallel()
		st, _ := standInStore(t, reg, nil) // both at EventStoreDB's default, 1 MiB
		check(t, st, -1, "append-size", batch...)
		// Within eventstream's MaxEventBytes (payload and meta), but over
		// 1 MiB once the envelope metadata and the protobuf framing are
		// counted as EventStoreDB counts them.
		e := added("x")
		e.Payload = json.RawMessage(`{"name":"x","note":"` + strings.Repeat("n", eventstore.MaxEventBytes-100) + `"}`)
		check(t, st, 0, "event-size", e)
		st2, _ := standInStore(t, reg, nil, esdb.WithMaxAppendSize(100))
		check(t, st2, 0, "event-size", added("x"), added("y"))
	})
	t.Run("RefusedByTheServer", func(t *testing.T) {
		t.Parallel()
		// The backend allows more than the server: the server's refusal
		// is reported the same way, and nothing is written.
		st, _ := standInStore(t, reg, nil, esdb.WithMaxAppendSize(16<<20))
		check(t, st, -1, "append-size", batch...)
	})
	t.Run("RaisedOnBothSides", func(t *testing.T) {
		t.Parallel()
		st, _ := standInStore(t, reg, []esdbtest.Option{esdbtest.MaxAppendSize(4 << 20)}, esdb.WithMaxAppendSize(4<<20))
		if res := mustAppend(t, st, "big", eventstore.NoStream, batch...); res.Version() != int64(len(batch)) {
			t.Fatalf("version %d, want %d", res.Version(), len(batch))
		}
	})
}

// System events (types starting with $) and events other programs wrote
// are not part of the log: ReadAll, Subscribe and Head skip them.
func TestStandIn_SkipsSystemAndForeignEvents(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	raw := rawClient(t, srv)
	ctx := t.Context()
	foreign := func(stream, typ string, meta []byte) {
		t.Helper()
		_, err := raw.AppendToStream(ctx, stream, client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: typ, ContentType: client.ContentTypeJson, Data: []byte(`{}`), Metadata: meta,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	foreign("$settings", "$metadata", nil)
	a := mustAppend(t, st, "mine", eventstore.NoStream, added("a")).Events[0]
	foreign("theirs", "order.placed", []byte(`{"who":"another program"}`))
	foreign("theirs", "order.binary", nil)
	b := mustAppend(t, st, "mine", eventstore.Exact(1), added("b")).Events[0]
	foreign("$stats-127.0.0.1:2113", "$statsCollected", nil)

	if got := readAll(t, st, eventstore.ReadAllOptions{}); ids(got) != ids([]eventstore.Event{a, b}) {
		t.Fatalf("ReadAll: %s, want %s", ids(got), ids([]eventstore.Event{a, b}))
	}
	// One event per page: the pages step over the skipped events.
	if got := readAll(t, st, eventstore.ReadAllOptions{Limit: 1}); ids(got) != ids([]eventstore.Event{a, b}) {
		t.Fatalf("ReadAll limit 1: %s, want %s", ids(got), ids([]eventstore.Event{a, b}))
	}
	h, err := st.Head(ctx)
	if err != nil || h != b.Position {
		t.Fatalf("Head = %v, %v; want %v, the last eventstream event", h, err, b.Position)
	}
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got []eventstore.Event
	for len(got) < 2 {
		evs, err := sub.Next(nctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs...)
	}
	if ids(got) != ids([]eventstore.Event{a, b}) {
		t.Fatalf("subscription: %s, want %s", ids(got), ids([]eventstore.Event{a, b}))
	}
	// A stream another program wrote is not an eventstream stream.
	if _, err := st.ReadStream(ctx, "theirs", 0, 0); err == nil || errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("ReadStream of a foreign stream: %v, want an error saying it is not an eventstream event", err)
	}
	// Stream ids EventStoreDB reserves are refused before sending.
	_, err = st.Append(ctx, "$mine", eventstore.Any, added("x"))
	var ve *eventstore.ValidationError
	if !errors.As(err, &ve) || ve.Rule != "stream-id" {
		t.Fatalf("append to $mine: %v, want a stream-id validation error", err)
	}
}

func TestStandIn_HeadPastManySystemEvents(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	raw := rawClient(t, srv)
	a := mustAppend(t, st, "mine", eventstore.NoStream, added("a")).Events[0]
	for range 100 { // more than Head's first backwards read
		if _, err := raw.AppendToStream(t.Context(), "$stats", client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: "$statsCollected", ContentType: client.ContentTypeJson, Data: []byte(`{}`),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := st.Head(t.Context()); err != nil || h != a.Position {
		t.Fatalf("Head = %v, %v; want %v", h, err, a.Position)
	}
	empty, _ := standInStore(t, registry(t), nil)
	if h, err := empty.Head(t.Context()); err != nil || !h.IsZero() {
		t.Fatalf("Head of an empty log = %v, %v; want Start", h, err)
	}
}

// Two namespaces on one server do not see each other.
func TestStandIn_Namespaces(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	_, srv := standInStore(t, reg, nil)
	open := func(ns string) eventstore.Store {
		st, err := esdb.New(t.Context(), srv.URL(), reg, esdb.WithNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	blue, green := open("blue-"), open("green-")
	b1 := mustAppend(t, blue, "s", eventstore.NoStream, added("b1")).Events[0]
	g1 := mustAppend(t, green, "s", eventstore.NoStream, added("g1")).Events[0]
	b2 := mustAppend(t, blue, "s", eventstore.Exact(1), added("b2")).Events[0]
	if b1.Stream != "s" || b1.Version != 1 || g1.Version != 1 {
		t.Fatalf("streams %q@%d and %q@%d, want s@1 in each namespace", b1.Stream, b1.Version, g1.Stream, g1.Version)
	}
	if got := readAll(t, blue, eventstore.ReadAllOptions{}); ids(got) != ids([]eventstore.Event{b1, b2}) {
		t.Fatalf("blue ReadAll: %s", ids(got))
	}
	if got := readAll(t, green, eventstore.ReadAllOptions{Types: []string{storetest.TypeAdded}}); ids(got) != ids([]eventstore.Event{g1}) {
		t.Fatalf("green ReadAll: %s", ids(got))
	}
	if h, _ := green.Head(t.Context()); h != g1.Position {
		t.Fatalf("green Head %v, want %v", h, g1.Position)
	}
	sub, err := green.Subscribe(t.Context(), eventstore.SubscribeOptions{Types: []string{storetest.TypeAdded}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if evs, err := sub.Next(ctx); err != nil || ids(evs) != ids([]eventstore.Event{g1}) {
		t.Fatalf("green subscription: %s %v", ids(evs), err)
	}
	if _, err := esdb.New(t.Context(), srv.URL(), reg, esdb.WithNamespace("$x")); err == nil {
		t.Fatal("a namespace starting with $ was accepted")
	}
}

func TestStandIn_TenantFilterInTheClient(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	var want []eventstore.Event
	for i := range 9 {
		e := added(fmt.Sprint(i))
		if i%3 == 0 {
			e.Meta.TenantID = "tenant-b"
		}
		res := mustAppend(t, st, "t", eventstore.Any, e)
		if i%3 == 0 {
			want = append(want, res.Events...)
		}
	}
	if got := readAll(t, st, eventstore.ReadAllOptions{TenantID: "tenant-b", Limit: 2}); ids(got) != ids(want) {
		t.Fatalf("tenant-b: %s, want %s", ids(got), ids(want))
	}
}

func TestStandIn_ConnectErrors(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	if _, err := esdb.New(t.Context(), "esdb://127.0.0.1:1?tls=false", nil); err == nil {
		t.Fatal("New without a registry succeeded")
	}
	if _, err := esdb.New(t.Context(), "postgres://x", reg); err == nil {
		t.Fatal("New with a postgres:// URL succeeded")
	}
	// Reads from a follower could miss the store's own appends: refused
	// before connecting, naming the setting.
	for _, pref := range []string{"follower", "random", "readOnlyReplica"} {
		_, err := esdb.New(t.Context(), "esdb://admin:s3cret@127.0.0.1:1?tls=false&nodePreference="+pref, reg)
		if err == nil || !strings.Contains(err.Error(), "nodePreference="+strings.ToLower(pref)) || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("New with nodePreference=%s: %v, want a refusal naming it, without the password", pref, err)
		}
	}
	// Nothing listens here: New fails, and says so without the password.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = esdb.New(ctx, "esdb://admin:s3cret@"+addr+"?tls=false&maxDiscoverAttempts=2&discoveryInterval=10", reg)
	if err == nil {
		t.Fatal("New to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %q shows the password", err)
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("New to a closed port: %v, want eventstore.ErrUnavailable", err)
	}
	if got := esdb.Redact("esdb://admin:s3cret@host:2113?tls=true"); strings.Contains(got, "s3cret") || !strings.Contains(got, "host:2113") {
		t.Fatalf("Redact = %q", got)
	}
}

// TestStandIn_ServerGoneEndsSubscription: with the server gone, the
// subscription ends with its drop and every call fails with
// eventstore.ErrUnavailable; once a server answers at the address again,
// the same store works (the client closes itself for good when its
// discovery gives up: the store must replace it).
func TestStandIn_ServerGoneEndsSubscription(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	sub, err := st.Subscribe(t.Context(), eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = sub.Next(ctx)
	if err == nil || errors.Is(err, eventstore.ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next after the server stopped: %v, want the subscription's drop", err)
	}
	// Each call fails as an outage (retry later), with the store still
	// open: the drop, the next Next's subscribe, and every other call.
	wantUnavailable := func(what string, err error) {
		t.Helper()
		var ue *eventstore.UnavailableError
		if !errors.Is(err, eventstore.ErrUnavailable) || !errors.As(err, &ue) || errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("%s with the server gone: %v, want eventstore.ErrUnavailable", what, err)
		}
	}
	wantUnavailable("the subscription's drop", err)
	_, err = sub.Next(ctx)
	wantUnavailable("Next", err)
	_, err = st.Append(ctx, "x", eventstore.Any, added("x"))
	wantUnavailable("Append", err)
	_, err = st.ReadStream(ctx, "x", 1, 0)
	wantUnavailable("ReadStream", err)
	_, err = st.ReadAll(ctx, eventstore.ReadAllOptions{})
	wantUnavailable("ReadAll", err)
	_, err = st.Head(ctx)
	wantUnavailable("Head", err)
	// A refusal decided before the server is needed stays a refusal.
	bad := added("x")
	bad.Type = "no.such.type"
	if _, err := st.Append(ctx, "x", eventstore.Any, bad); !errors.Is(err, eventstore.ErrValidation) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("invalid append with the server gone: %v, want ErrValidation only", err)
	}

	// Many callers at once through the outage, across the store's
	// renewals of its client: each call ends, as ErrUnavailable. A client
	// handed to the calls before it has connected strands every call that
	// asks it for its connection while its discovery fails, whatever the
	// call's context says.
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	until := time.Now().Add(3 * time.Second)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(until) {
				cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
				_, err := st.Append(cctx, "x", eventstore.Any, added("x"))
				ccancel()
				select {
				case errs <- err:
				default:
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("Append from 8 callers at once with the server gone: a call has not returned within a minute")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, eventstore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Append from 8 callers at once with the server gone: %v, want eventstore.ErrUnavailable", err)
			break
		}
	}

	// Back (a server at the same address): the same store, not reopened,
	// appends and reads again.
	back, err := esdbtest.Start(t.Context(), esdbtest.Addr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Stop)
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		_, err = st.Append(ctx, "after", eventstore.NoStream, added("after"))
		if err == nil {
			break
		}
		if ctx.Err() == nil {
			lastErr = err
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("Append once the server is back: %v (last error %v), want it to work again without reopening the store", err, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if evs, err := st.ReadStream(ctx, "after", 1, 0); err != nil || len(evs) != 1 {
		t.Fatalf("ReadStream once the server is back: %d events, %v", len(evs), err)
	}
}

func TestStandIn_SubscribeSetupHonoursContext(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := st.Subscribe(ctx, eventstore.SubscribeOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a cancelled context: %v, want context.Canceled", err)
	}
	// A subscription outlives the context it was set up with.
	sctx, scancel := context.WithCancel(t.Context())
	sub, err := st.Subscribe(sctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	scancel()
	res := mustAppend(t, st, "later", eventstore.NoStream, added("a"))
	nctx, ncancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer ncancel()
	if evs, err := sub.Next(nctx); err != nil || len(evs) != 1 || evs[0].ID != res.Events[0].ID {
		t.Fatalf("Next after the setup context ended: %d events, %v", len(evs), err)
	}
}

// Page.Next at the end of the log points just past the last event; reading
// or subscribing from it gives what comes after, on a server that refuses
// positions whose prepare is above their commit.
func TestStandIn_NextAtTheEnd(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	ctx := t.Context()
	last := mustAppend(t, st, "n", eventstore.NoStream, added("a"), added("b")).Events[1]
	p, err := st.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err != nil || !p.End || len(p.Events) != 2 {
		t.Fatalf("ReadAll: %d events, End %v, %v", len(p.Events), p.End, err)
	}
	if p.Next.Compare(last.Position) <= 0 {
		t.Fatalf("Next %v is not after the last event %v", p.Next, last.Position)
	}
	sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{After: p.Next})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next := mustAppend(t, st, "n", eventstore.Exact(2), added("c")).Events[0]
	q, err := st.ReadAll(ctx, eventstore.ReadAllOptions{From: p.Next})
	if err != nil || len(q.Events) != 1 || q.Events[0].ID != next.ID {
		t.Fatalf("ReadAll from Next: %s %v, want only the new event", ids(q.Events), err)
	}
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if evs, err := sub.Next(nctx); err != nil || len(evs) != 1 || evs[0].ID != next.ID {
		t.Fatalf("subscription after Next: %s %v, want only the new event", ids(evs), err)
	}
	// A page that stops before the end points at the next event itself.
	r, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 1})
	if err != nil || r.End || r.Next != p.Events[1].Position {
		t.Fatalf("first page of one: Next %v End %v (%v), want the second event's position %v", r.Next, r.End, err, p.Events[1].Position)
	}
}

// The Store contract makes any error of Next other than ctx's and
// ErrClosed transient: the subscription keeps its place, and the next
// Next resumes after the last event it returned. A server drops
// subscriptions (a restart, a leader election); after the drop, Next
// reports it once, as ErrUnavailable, then subscribes again and delivers
// the rest of the log, each event once. A node that stops being the leader
// drops its subscriptions with "not leader" (gRPC NotFound), which the
// subscription reports as the bare status: it was a generic error, which
// the projection runtime counts as a failure of the event and the CLI
// reports as a failed command, instead of an outage to wait out.
func TestStandIn_SubscriptionResumesAfterADrop(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		drop func(*esdbtest.Server)
	}{
		{"unavailable", (*esdbtest.Server).DropSubscriptions},
		{"not leader", (*esdbtest.Server).DropSubscriptionsNotLeader},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			subscriptionResumesAfterADrop(t, c.drop)
		})
	}
}

func subscriptionResumesAfterADrop(t *testing.T, drop func(*esdbtest.Server)) {
	st, srv := standInStore(t, registry(t), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want := mustAppend(t, st, "drop", eventstore.NoStream, added("a"), added("b"), added("c")).Events
	sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}

	drop(srv)
	dropped := false
	for !dropped {
		evs, err := sub.Next(ctx)
		switch {
		case err == nil:
			got = append(got, evs...) // buffered before the drop
		case errors.Is(err, eventstore.ErrClosed) || ctx.Err() != nil:
			t.Fatalf("Next after the server dropped the subscription: %v, want the drop", err)
		case !errors.Is(err, eventstore.ErrUnavailable):
			t.Fatalf("Next after the server dropped the subscription: %v, want ErrUnavailable", err)
		default:
			t.Logf("the drop: %v", err)
			dropped = true
		}
		if len(got) > len(want) {
			t.Fatalf("%d events delivered before the drop was reported, the log has %d", len(got), len(want))
		}
	}
	want = append(want, mustAppend(t, st, "drop", eventstore.Exact(3), added("d")).Events...)
	for len(got) < len(want) {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after the drop was reported, %d of %d events delivered: %v", len(got), len(want), err)
		}
		got = append(got, evs...)
	}
	if ids(got) != ids(want) {
		t.Fatalf("delivered %s, want %s: each event once, in order", ids(got), ids(want))
	}
	nctx, ncancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ncancel()
	if evs, err := sub.Next(nctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing more: %s %v, want the deadline", ids(evs), err)
	}
}

// Servers before 22.6.0 send no $all position with a stream read, and the
// backend takes an appended event's position from reading it back: on
// such a server every append result would carry position 2^64-1, which no
// event has. New refuses them; from 22.6.0 on, an append result has the
// position $all gives the event.
func TestStandIn_ServersBefore22_6AreRefused(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	for _, c := range []struct {
		version string
		refused bool
	}{{"21.10.9", true}, {"20.10.5", true}, {"22.6.0", false}, {"24.10.1", false}} {
		t.Run(c.version, func(t *testing.T) {
			t.Parallel()
			srv, err := esdbtest.Start(t.Context(), esdbtest.ServerVersion(c.version))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Stop)
			st, err := esdb.New(t.Context(), srv.URL(), reg)
			if c.refused {
				if err == nil {
					defer st.Close()
					res, err := st.Append(t.Context(), "s", eventstore.NoStream, added("a"))
					t.Fatalf("New accepted EventStoreDB %s; an append then gave position %v (%v)", c.version, res.Events[0].Position, err)
				}
				if !strings.Contains(err.Error(), c.version) || !strings.Contains(err.Error(), "22.6") {
					t.Fatalf("New on %s: %v; want an error naming the version and 22.6", c.version, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			res := mustAppend(t, st, "s", eventstore.NoStream, added("a"), added("b"))
			if got := readAll(t, st, eventstore.ReadAllOptions{}); len(got) != 2 || got[0].Position != res.Events[0].Position || got[1].Position != res.Events[1].Position {
				t.Fatalf("append result positions %v %v, $all has %d events: %s", res.Events[0].Position, res.Events[1].Position, len(got), ids(got))
			}
		})
	}
}

// A position inside a record (one not made by this store: a PostgreSQL
// position, a typo) is refused by EventStoreDB after it has confirmed the
// subscription (since 24.2). That is no transient drop: subscribing again
// meets it again. Next fails for good with an error that names the
// position, instead of reporting a drop and subscribing again on every
// call.
func TestStandIn_SubscribeFromAnInvalidPosition(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := mustAppend(t, st, "p", eventstore.NoStream, added("a"), added("b")).Events[0]
	bad := eventstore.Pos(e.Position.Commit + 1)
	sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{After: bad})
	if err == nil {
		defer sub.Close()
		_, err = sub.Next(ctx)
		if err == nil {
			t.Fatalf("Next from %v (inside a record) delivered events", bad)
		}
		if _, again := sub.Next(ctx); again == nil || again.Error() != err.Error() {
			t.Fatalf("Next after the refusal: %v, want the same error again (the subscription has ended): %v", again, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventstore.ErrClosed) ||
		strings.Contains(err.Error(), "subscribes again") || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("subscription from %v (inside a record): %v; want an error that names the position, not a transient drop", bad, err)
	}
	t.Logf("refused: %v", err)
	if _, err := st.ReadAll(ctx, eventstore.ReadAllOptions{From: bad}); err == nil || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("ReadAll from %v (inside a record): %v, want an error that names the position", bad, err)
	}
}

// A stream whose first events EventStoreDB hides ($tb, $maxCount, $maxAge
// in its metadata) is read by the server from the first event it still
// has. ReadStream used to return that rest as if it were the whole stream
// (an aggregate rebuilt from it starts at a later version, silently
// wrong); it is now ErrTruncated, naming the stream, the version asked and
// the first version left. Appends go on numbering from the stream's last
// version, and ReadAll still has every event.
func TestStandIn_ReadStreamOfATruncatedStream(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	st, srv := standInStore(t, registry(t), []esdbtest.Option{esdbtest.Clock(clock)}, esdb.WithNamespace("ns-"))
	c := rawClient(t, srv)
	ctx := t.Context()
	setMeta := func(stream string, set func(*client.StreamMetadata)) {
		t.Helper()
		var m client.StreamMetadata
		set(&m)
		if _, err := c.SetStreamMetadata(ctx, "ns-"+stream, client.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
	}
	five := func() []eventstore.Event {
		return []eventstore.Event{added("a"), added("b"), added("c"), added("d"), added("e")}
	}
	for _, s := range []string{"tb", "count", "age", "gone"} {
		mustAppend(t, st, s, eventstore.NoStream, five()...)
	}
	now.Add(int64(2 * time.Minute))
	mustAppend(t, st, "age", eventstore.Exact(5), added("f"), added("g"))
	setMeta("tb", func(m *client.StreamMetadata) { m.SetTruncateBefore(2) })
	setMeta("count", func(m *client.StreamMetadata) { m.SetMaxCount(2) })
	setMeta("age", func(m *client.StreamMetadata) { m.SetMaxAge(time.Minute) })
	setMeta("gone", func(m *client.StreamMetadata) { m.SetTruncateBefore(10) })

	for _, tc := range []struct {
		stream string
		from   int64
		limit  int
		want   string // in the error; "" for no error
	}{
		{"tb", 1, 0, `"tb" from version 1: ` + esdb.ErrTruncated.Error() + `: the first version the server still returns is 3`},
		{"tb", 0, 0, `"tb" from version 1:`},
		{"tb", 1, 1, `"tb" from version 1:`},
		{"tb", 2, 0, `"tb" from version 2: ` + esdb.ErrTruncated.Error() + `: the first version the server still returns is 3`}, // after a snapshot at 1
		{"tb", 3, 0, ""},
		{"count", 1, 0, "the first version the server still returns is 4"},
		{"count", 4, 0, ""},
		{"age", 1, 0, "the first version the server still returns is 6"},
		{"age", 5, 0, "the first version the server still returns is 6"},
		{"age", 6, 0, ""},
		{"gone", 1, 0, `"gone" from version 1: ` + esdb.ErrTruncated.Error() + `: the server returns none of its events`},
	} {
		evs, err := st.ReadStream(ctx, tc.stream, tc.from, tc.limit)
		if tc.want == "" {
			if err != nil || len(evs) == 0 || evs[0].Version != tc.from {
				t.Fatalf("ReadStream(%s, %d): %d events, %v; want events from version %d", tc.stream, tc.from, len(evs), err, tc.from)
			}
			continue
		}
		if !errors.Is(err, esdb.ErrTruncated) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("ReadStream(%s, %d, %d): %d events, %v; want ErrTruncated saying %q", tc.stream, tc.from, tc.limit, len(evs), err, tc.want)
		}
		if errors.Is(err, eventstore.ErrStreamNotFound) || evs != nil {
			t.Fatalf("ReadStream(%s, %d): %v with %d events; want no events and not ErrStreamNotFound", tc.stream, tc.from, err, len(evs))
		}
	}
	// The stream's version does not move back: an exact expected version
	// goes on from it; an older one is a conflict.
	res := mustAppend(t, st, "tb", eventstore.Exact(5), added("f"))
	if res.Events[0].Version != 6 {
		t.Fatalf("append at version 5 of a truncated stream stored version %d, want 6", res.Events[0].Version)
	}
	if _, err := st.Append(ctx, "gone", eventstore.NoStream, added("x")); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("append expecting no stream to a stream whose events are all hidden: %v, want a conflict", err)
	}
	if evs, err := st.ReadStream(ctx, "tb", 4, 0); err != nil || len(evs) != 3 || evs[2].ID != res.Events[0].ID {
		t.Fatalf("ReadStream(tb, 4) after the append: %d events, %v; want versions 4 to 6", len(evs), err)
	}
	// Past the end: nothing, as before.
	if evs, err := st.ReadStream(ctx, "gone", 6, 0); err != nil || len(evs) != 0 {
		t.Fatalf("ReadStream(gone, 6): %d events, %v; want none", len(evs), err)
	}
	// ReadAll does not read streams: every event is still there.
	perStream := map[string]int{}
	for _, e := range readAll(t, st, eventstore.ReadAllOptions{}) {
		perStream[e.Stream]++
	}
	if perStream["tb"] != 6 || perStream["count"] != 5 || perStream["age"] != 7 || perStream["gone"] != 5 {
		t.Fatalf("ReadAll holds %v events per stream, want every event written", perStream)
	}
}

// A filtered ReadAll with a small Limit over a long stretch of events it
// leaves out used to read Limit+2 events a call: about 5,000 round trips
// for the 10,000 events below at Limit 1. Reads now grow while they keep
// nothing; the pages are the same: the same events, Next and End as a
// model of the page rules computed from the whole log.
func TestStandIn_FilteredReadAllReadsLongGapsInFewCalls(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), []esdbtest.Option{esdbtest.MaxAppendSize(conformanceAppendSize)}, esdb.WithMaxAppendSize(conformanceAppendSize))
	renamed := func(tenant string) eventstore.Event {
		return eventstore.Event{Type: storetest.TypeRenamed, Source: "esdb-test", Payload: json.RawMessage(`{"name":"r"}`),
			Meta: eventstore.Meta{SchemaVersion: 1, TenantID: tenant}}
	}
	addedBy := func(tenant string) eventstore.Event {
		e := added("x")
		e.Meta.TenantID = tenant
		return e
	}
	n := 1
	put := func(evs ...eventstore.Event) {
		t.Helper()
		mustAppend(t, st, fmt.Sprintf("s-%d", n), eventstore.NoStream, evs...)
		n++
	}
	put(renamed("tenant-b"))
	const gap = 10_000
	for range gap / 2000 {
		batch := make([]eventstore.Event, 2000)
		for i := range batch {
			batch[i] = addedBy("tenant-a")
		}
		put(batch...)
	}
	put(renamed("tenant-a"), addedBy("tenant-b"), addedBy("tenant-a"), addedBy("tenant-a"))
	put(renamed("tenant-b"), addedBy("tenant-a"), addedBy("tenant-a"))

	all := readAll(t, st, eventstore.ReadAllOptions{Limit: 5000})
	// model is the page the rules give from index i of the whole log: the
	// first limit events kept, Next the event after the last one looked
	// at (or just past the end of the log, with End).
	model := func(i, limit int, keep func(eventstore.Event) bool) (eventstore.Page, int) {
		var p eventstore.Page
		for ; i < len(all); i++ {
			if len(p.Events) == limit {
				p.Next = all[i].Position
				return p, i
			}
			if keep(all[i]) {
				p.Events = append(p.Events, all[i])
			}
		}
		last := all[len(all)-1].Position
		p.Next, p.End = eventstore.Position{Commit: last.Commit, Prepare: last.Prepare + 1}, true
		return p, i
	}
	for _, tc := range []struct {
		name   string
		opts   eventstore.ReadAllOptions
		keep   func(eventstore.Event) bool
		budget int64 // Read calls for the whole walk
	}{
		{"types limit 1", eventstore.ReadAllOptions{Limit: 1, Types: []string{storetest.TypeRenamed}},
			func(e eventstore.Event) bool { return e.Type == storetest.TypeRenamed }, 40},
		{"tenant limit 1", eventstore.ReadAllOptions{Limit: 1, TenantID: "tenant-b"},
			func(e eventstore.Event) bool { return e.Meta.TenantID == "tenant-b" }, 40},
		{"tenant limit 2", eventstore.ReadAllOptions{Limit: 2, TenantID: "tenant-b"},
			func(e eventstore.Event) bool { return e.Meta.TenantID == "tenant-b" }, 40},
		{"types and tenant limit 3", eventstore.ReadAllOptions{Limit: 3, Types: []string{storetest.TypeRenamed}, TenantID: "tenant-b"},
			func(e eventstore.Event) bool { return e.Type == storetest.TypeRenamed && e.Meta.TenantID == "tenant-b" }, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Reads()
			opts, i := tc.opts, 0
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("more pages than the log has matching events")
				}
				got, err := st.ReadAll(t.Context(), opts)
				if err != nil {
					t.Fatal(err)
				}
				var want eventstore.Page
				want, i = model(i, opts.Limit, tc.keep)
				if ids(got.Events) != ids(want.Events) || got.Next != want.Next || got.End != want.End {
					t.Fatalf("page %d from %v: events [%s] Next %v End %v; want [%s] Next %v End %v",
						pages, opts.From, ids(got.Events), got.Next, got.End, ids(want.Events), want.Next, want.End)
				}
				if got.End {
					break
				}
				opts.From = got.Next
			}
			if reads := srv.Reads() - before; reads > tc.budget {
				t.Fatalf("the walk over %d events took %d reads, want at most %d", len(all), reads, tc.budget)
			} else {
				t.Logf("%d reads", reads)
			}
		})
	}
}

// StreamExists appends only to a stream that has events. EventStoreDB's
// stream_exists is also satisfied by a stream that only has metadata (an
// operator set $maxAge or an ACL before its first event): the backend
// used to send StreamExists as stream_exists alone, so such an append
// wrote the stream's first event instead of failing as a conflict.
func TestStandIn_StreamExistsOnAStreamWithMetadataOnly(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil, esdb.WithNamespace("ns-"))
	ctx := t.Context()
	var md client.StreamMetadata
	md.SetMaxAge(time.Hour)
	if _, err := rawClient(t, srv).SetStreamMetadata(ctx, "ns-m", client.AppendToStreamOptions{}, md); err != nil {
		t.Fatal(err)
	}
	_, err := st.Append(ctx, "m", eventstore.StreamExists, added("a"))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.Actual != 0 || ce.Expected != eventstore.StreamExists || ce.Stream != "m" {
		t.Fatalf("StreamExists on a stream with metadata and no events: %v, want ConcurrencyError actual 0", err)
	}
	if _, err := st.ReadStream(ctx, "m", 1, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("ReadStream after the refused append: %v, want ErrStreamNotFound", err)
	}
	mustAppend(t, st, "m", eventstore.NoStream, added("a"))
	res := mustAppend(t, st, "m", eventstore.StreamExists, added("b"))
	if res.Version() != 2 {
		t.Fatalf("StreamExists once the stream has an event: version %d, want 2", res.Version())
	}
	// A stream whose events its metadata all hides still has them: its
	// versions go on.
	mustAppend(t, st, "hidden", eventstore.NoStream, added("a"), added("b"))
	var tb client.StreamMetadata
	tb.SetTruncateBefore(2)
	if _, err := rawClient(t, srv).SetStreamMetadata(ctx, "ns-hidden", client.AppendToStreamOptions{}, tb); err != nil {
		t.Fatal(err)
	}
	if res := mustAppend(t, st, "hidden", eventstore.StreamExists, added("c")); res.Version() != 3 {
		t.Fatalf("StreamExists on a stream whose events are hidden: version %d, want 3", res.Version())
	}
}

// Any exact expected version that does not hold is a conflict, however
// large (an expected version from a request is not checked against the
// stream). On the stand-in one above 2^62 used to fail as an invalid
// argument instead of ErrConcurrency.
func TestStandIn_HugeExpectedVersionIsAConflict(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	mustAppend(t, st, "h", eventstore.NoStream, added("a"))
	for _, v := range []int64{1<<62 + 2, math.MaxInt64} {
		_, err := st.Append(t.Context(), "h", eventstore.Exact(v), added("b"))
		var ce *eventstore.ConcurrencyError
		if !errors.As(err, &ce) || ce.Actual != 1 {
			t.Fatalf("Append expecting version %d of a stream at 1: %v, want ConcurrencyError actual 1", v, err)
		}
	}
}

// TestStandIn_AppendWaitsAsLongAsTheCallerAllows: the client bounds an
// append by 10 s unless told otherwise; the store lets the caller's
// context decide instead, as every backend does. A node that takes 11 s
// to answer still gets the append in; a caller's own deadline ends it
// with the context's error, not as an outage.
func TestStandIn_AppendWaitsAsLongAsTheCallerAllows(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), []esdbtest.Option{esdbtest.AppendDelay(11 * time.Second)})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := st.Append(ctx, "slow", eventstore.NoStream, added("slow")); err != nil {
		t.Fatalf("an append the node answers in 11 s, with a minute allowed: %v", err)
	}
	short, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := st.Append(short, "slow", eventstore.Any, added("slow"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("an append past the caller's deadline: %v, want context.DeadlineExceeded only", err)
	}
}

// TestStandIn_DefaultDeadlineBoundsAppends: a defaultDeadline set in the
// connection string is the operator's bound, kept: a node slower than it
// is an outage (ErrUnavailable), whatever the caller's context allows.
func TestStandIn_DefaultDeadlineBoundsAppends(t *testing.T) {
	t.Parallel()
	srv, err := esdbtest.Start(t.Context(), esdbtest.AppendDelay(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := esdb.New(ctx, srv.URL()+"&defaultDeadline=300", registry(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	start := time.Now()
	_, err = st.Append(ctx, "slow", eventstore.NoStream, added("slow"))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("an append slower than defaultDeadline=300ms: %v, want eventstore.ErrUnavailable", err)
	}
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatalf("the append took %v: defaultDeadline=300ms was not applied", took)
	}
}

// The largest page sizes a caller can ask for are taken as "as many as
// fit", as the other backends take them. ReadAll with Limit math.MaxInt
// used to overflow the size of its first read, and Subscribe with
// BatchSize math.MaxInt panicked making its buffer.
func TestStandIn_HugePageSizes(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	mustAppend(t, st, "huge", eventstore.NoStream, added("a"), added("b"), added("c"))
	page, err := st.ReadAll(t.Context(), eventstore.ReadAllOptions{Limit: math.MaxInt})
	if err != nil || len(page.Events) != 3 || !page.End {
		t.Fatalf("ReadAll with Limit math.MaxInt: %d events, End %v, %v; want the 3 events and End", len(page.Events), page.End, err)
	}
	for _, n := range []int{math.MaxInt, math.MaxInt - 1, 1 << 40} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: n})
		if err != nil {
			cancel()
			t.Fatalf("Subscribe with BatchSize %d: %v", n, err)
		}
		var got []eventstore.Event
		for len(got) < 3 {
			evs, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("Next with BatchSize %d after %d events: %v", n, len(got), err)
			}
			got = append(got, evs...)
		}
		if len(got) != 3 || got[0].Type != page.Events[0].Type || got[2].ID != page.Events[2].ID {
			t.Fatalf("Subscribe with BatchSize %d: %d events, want the 3 of ReadAll in order", n, len(got))
		}
		sub.Close()
		cancel()
	}
}

// A closed store says so before it looks at the arguments, as the
// others do: Subscribe with a filter no event can match used to return
// the filter's ValidationError.
func TestStandIn_ClosedBeforeArguments(t *testing.T) {
	t.Parallel()
	st, _ := standInStore(t, registry(t), nil)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := st.Subscribe(t.Context(), eventstore.SubscribeOptions{Types: []string{"Not A Type"}})
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe with a bad filter on a closed store: %v, want ErrClosed", err)
	}
}

// EventStoreDB answers an append whose commit the cluster did not
// acknowledge in time (an election, a node lost) with "Operation timed
// out" (gRPC Aborted): the events may have been written. That is
// ErrUnavailable, whose contract says exactly that: retry with the same
// ids. It was a generic error, so callers that retry outages gave up, and
// the CLI exited as for a refused append. The retry then gets the
// original result, and the stream holds the events once.
func TestStandIn_AppendTimedOutByTheClusterIsUnavailable(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	evs := []eventstore.Event{added("a"), added("b")}
	for i := range evs {
		evs[i].ID = uuid.New()
	}
	srv.TimeOutAppends(1)
	_, err := st.Append(t.Context(), "timeout", eventstore.NoStream, evs...)
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append answered with a commit timeout: %v, want ErrUnavailable", err)
	}
	res := mustAppend(t, st, "timeout", eventstore.NoStream, evs...)
	if got, want := ids(res.Events), ids(evs); got != want || res.Events[1].Version != 2 {
		t.Fatalf("retry: %s (last version %d), want %s at versions 1 and 2", got, res.Events[1].Version, want)
	}
	stored, err := st.ReadStream(t.Context(), "timeout", 1, 0)
	if err != nil || ids(stored) != ids(evs) {
		t.Fatalf("stream after the retry: %s %v, want %s once", ids(stored), err, ids(evs))
	}
}

// ScanLimit counts the events of the log, not the records of $all that
// are not in it (system events, other programs' events): those are
// stepped over, also after the budget is used, so that a page that used
// it on the log's last event still ends the log.
func TestStandIn_ScanLimitStepsOverForeignEvents(t *testing.T) {
	t.Parallel()
	st, srv := standInStore(t, registry(t), nil)
	raw := rawClient(t, srv)
	foreign := func() {
		t.Helper()
		if _, err := raw.AppendToStream(t.Context(), "theirs", client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: "order.placed", ContentType: client.ContentTypeJson, Data: []byte(`{}`),
		}); err != nil {
			t.Fatal(err)
		}
	}
	a := mustAppend(t, st, "mine", eventstore.NoStream, added("a")).Events[0]
	foreign()
	foreign()
	b := mustAppend(t, st, "mine", eventstore.Exact(1), added("b")).Events[0]
	foreign()
	c := mustAppend(t, st, "mine", eventstore.Exact(2), added("c")).Events[0]
	foreign()
	foreign()

	for _, tc := range []struct {
		name string
		opts eventstore.ReadAllOptions
		want [][]eventstore.Event
	}{
		{"unfiltered", eventstore.ReadAllOptions{ScanLimit: 1}, [][]eventstore.Event{{a}, {b}, {c}}},
		{"all left out", eventstore.ReadAllOptions{ScanLimit: 1, Types: []string{storetest.TypeRenamed}}, [][]eventstore.Event{nil, nil, nil}},
		{"two", eventstore.ReadAllOptions{ScanLimit: 2}, [][]eventstore.Event{{a, b}, {c}}},
	} {
		opts := tc.opts
		next := []eventstore.Position{b.Position, c.Position}
		if tc.opts.ScanLimit == 2 {
			next = next[1:]
		}
		for i, want := range tc.want {
			p, err := st.ReadAll(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			last := i == len(tc.want)-1
			if ids(p.Events) != ids(want) || p.End != last || (!last && p.Next != next[i]) {
				t.Fatalf("%s: page %d: events [%s] Next %v End %v; want [%s] End %v", tc.name, i, ids(p.Events), p.Next, p.End, ids(want), last)
			}
			opts.From = p.Next
		}
	}
}
