package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// readTestEvents are events with every kind of value a read decodes: NULL
// and present target, correlation, causation and producer; meta extras
// present and absent; unicode; a large payload.
func readTestEvents() []eventstore.Event {
	tags := make([]string, 4000)
	for i := range tags {
		tags[i] = fmt.Sprintf("tag %d — ünïcødé 日本語 🚀 %s", i, strings.Repeat("x", 150))
	}
	large, _ := json.Marshal(map[string]any{"n": 3, "title": "large", "tags": tags})
	return []eventstore.Event{
		{
			Type: "test.thing.happened", Source: "tests", Target: "target-1",
			Payload: json.RawMessage(`{"n": 1, "title": "every field"}`),
			Meta: eventstore.Meta{
				SchemaVersion: 1, TenantID: "acme", Producer: "read_test",
				CorrelationID: "corr-1", CausationID: "cause-1",
				Extra: map[string]any{"k": "v", "n": json.Number("1.5"), "nested": map[string]any{"a": []any{json.Number("1"), "b", nil, true}}},
			},
		},
		{
			Type: "test.thing.happened", Source: "tests",
			Payload: json.RawMessage(`{"n": 2, "title": "no optional field"}`),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme"},
		},
		{
			Type: "test.thing.happened", Source: "sourçe — 日本語", Target: "tärget 🎯",
			Payload: large,
			Meta: eventstore.Meta{
				SchemaVersion: 1, TenantID: "ténant", Producer: "prödücer",
				CorrelationID: "cörrelation", Extra: map[string]any{"ünïcødé": "日本語"},
			},
		},
		{
			Type: "test.thing.happened", Source: "tests",
			Payload: json.RawMessage(`{"n": 4, "title": "ünïcødé 日本語 🚀 \"quoted\" \\ \u0001"}`),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme", CausationID: "cause-only"},
		},
		{
			Type: "test.thing.happened", Source: "tests",
			Payload: json.RawMessage(`{"n": 5, "title": "same as before"}`),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme", CausationID: "cause-only"},
		},
	}
}

func readTestStore(t testing.TB, u string, mode pgx.QueryExecMode) *Store {
	t.Helper()
	return readTestStoreWith(t, u, func(cfg *pgxpool.Config) { cfg.ConnConfig.DefaultQueryExecMode = mode })
}

// readTestStoreWith is readTestStore with the pool's configuration set by
// configure.
func readTestStoreWith(t testing.TB, u string, configure func(*pgxpool.Config)) *Store {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	configure(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg, err := schemas.Load(schemas.Embedded(), os.DirFS("testdata/schemas"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), pool, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestReadDecodesEveryValue reads back events with every kind of value,
// through the raw-value path and through Scan, and compares them field by
// field with what was appended and with each other.
func TestReadDecodesEveryValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	s := readTestStore(t, u, pgx.QueryExecModeCacheStatement)

	var appended []eventstore.Event
	for _, stream := range []string{"read-a", "read-b"} {
		res, err := s.Append(ctx, stream, eventstore.NoStream, readTestEvents()...)
		if err != nil {
			t.Fatal(err)
		}
		appended = append(appended, res.Events...)
	}
	sent := append(readTestEvents(), readTestEvents()...)

	readA, err := s.ReadStream(ctx, "read-a", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	readB, err := s.ReadStream(ctx, "read-b", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(readA) != 5 || len(readB) != 4 || len(page.Events) != 10 {
		t.Fatalf("read %d, %d and %d events, want 5, 4 and 10", len(readA), len(readB), len(page.Events))
	}
	for i, e := range page.Events {
		sameAsAppended(t, fmt.Sprintf("ReadAll[%d]", i), e, appended[i], sent[i])
	}
	for i, e := range readA {
		sameAsAppended(t, fmt.Sprintf("ReadStream a[%d]", i), e, appended[i], sent[i])
	}
	for i, e := range readB {
		sameAsAppended(t, fmt.Sprintf("ReadStream b[%d]", i), e, appended[6+i], sent[6+i])
	}

	// The raw-value path must give exactly what Scan gives.
	scanned := scanAll(t, s.pool)
	if !reflect.DeepEqual(page.Events, scanned) {
		t.Fatalf("collect and Scan disagree:\n%+v\n%+v", page.Events, scanned)
	}
	sub, err := s.Subscribe(ctx, eventstore.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, scanned) {
		t.Fatalf("Subscribe and Scan disagree:\n%+v\n%+v", got, scanned)
	}

	// The raw-value path shares a text value that repeats the previous
	// row's (one string, not a copy per row), and a changed one is read
	// as itself, not as the previous row's.
	if readA[1].Meta.CausationID != "" || readA[2].Source != sent[2].Source || readA[3].Meta.CausationID != "cause-only" {
		t.Fatal("changed values decoded wrong")
	}
	for _, c := range []struct{ what, prev, next string }{
		{"type of rows 1 and 2", readA[0].Type, readA[1].Type},
		{"source of rows 1 and 2", readA[0].Source, readA[1].Source},
		{"causation of rows 4 and 5", readA[3].Meta.CausationID, readA[4].Meta.CausationID},
		{"stream of rows 1 and 5", readA[0].Stream, readA[4].Stream},
	} {
		if c.prev != c.next {
			t.Fatalf("%s: %q and %q, want the same text", c.what, c.prev, c.next)
		}
		if unsafe.StringData(c.prev) != unsafe.StringData(c.next) {
			t.Errorf("%s: %q is two copies, want one shared string", c.what, c.prev)
		}
	}

	// Under the simple protocol every column arrives as text: the rows are
	// scanned, with the same result.
	simple := readTestStore(t, u, pgx.QueryExecModeSimpleProtocol)
	if !fastPath(t, s.pool) || fastPath(t, simple.pool) {
		t.Fatalf("fast path taken: %v under the extended protocol, %v under the simple one; want true, false", fastPath(t, s.pool), fastPath(t, simple.pool))
	}
	sp, err := simple.ReadAll(ctx, eventstore.ReadAllOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sp.Events, scanned) {
		t.Fatalf("simple protocol and Scan disagree:\n%+v\n%+v", sp.Events, scanned)
	}
}

// sameAsAppended compares a read event field by field with the append's
// result and with the event as it was sent.
func sameAsAppended(t *testing.T, what string, got, res, sent eventstore.Event) {
	t.Helper()
	if got.ID != res.ID || got.Type != sent.Type || got.Stream != res.Stream || got.Version != res.Version ||
		got.Position != res.Position || got.Source != sent.Source || got.Target != sent.Target {
		t.Fatalf("%s: got %+v, want %+v", what, got, res)
	}
	if got.Timestamp.Location() != time.UTC || !got.Timestamp.Equal(res.Timestamp) || got.Timestamp != res.Timestamp.UTC() {
		t.Fatalf("%s: timestamp %v (%v), want %v in UTC", what, got.Timestamp, got.Timestamp.Location(), res.Timestamp)
	}
	if !eventstore.JSONEqual(got.Payload, sent.Payload) {
		t.Fatalf("%s: payload %.200s, want %.200s", what, got.Payload, sent.Payload)
	}
	gm, sm := got.Meta, sent.Meta
	if gm.SchemaVersion != sm.SchemaVersion || gm.TenantID != sm.TenantID || gm.Producer != sm.Producer ||
		gm.CorrelationID != sm.CorrelationID || gm.CausationID != sm.CausationID {
		t.Fatalf("%s: meta %+v, want %+v", what, gm, sm)
	}
	if (gm.Extra == nil) != (sm.Extra == nil) || !eventstore.ValueEqual(extraValue(gm.Extra), extraValue(sm.Extra)) {
		t.Fatalf("%s: meta extra %#v, want %#v", what, gm.Extra, sm.Extra)
	}
}

func extraValue(m map[string]any) any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// fastPath reports whether collect reads the raw values of the pool's rows.
func fastPath(t *testing.T, pool *pgxpool.Pool) bool {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT `+selectColumns+` FROM events ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal("no rows")
	}
	var d rowDecoder
	d.init(rows.FieldDescriptions())
	return d.ok
}

// scanAll reads the whole log with Scan alone.
func scanAll(t *testing.T, pool *pgxpool.Pool) []eventstore.Event {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT `+selectColumns+` FROM events ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []eventstore.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRowDecoderTimestamps checks the timestamp conversion against pgx's
// own, on both sides of 2000-01-01 and at the limits, and that the values
// pgx refuses to scan are left to Scan.
func TestRowDecoderTimestamps(t *testing.T) {
	t.Parallel()
	m := pgtype.NewMap()
	var d rowDecoder
	d.ok = true
	for _, us := range []int64{
		0, 1, -1, 999_999, -999_999, 1_000_000, -1_000_001, 123_456_789_012_345, -123_456_789_012_345,
		time.Date(2026, 11, 27, 4, 9, 5, 123456000, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds(),
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC).Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds(),
		-211_813_488_000_000_000, // 4714-11-24 BC, PostgreSQL's first day
		9_214_646_399_999_999,    // the last microsecond of 294276
		math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1,
	} {
		raw := binary.BigEndian.AppendUint64(nil, uint64(us))
		var want time.Time
		wantErr := m.Scan(pgtype.TimestamptzOID, pgtype.BinaryFormatCode, raw, &want)
		vals := rawRow(raw)
		var e eventstore.Event
		ok, err := d.decode(vals, &e)
		switch {
		case err != nil:
			t.Fatalf("%d µs: %v", us, err)
		case wantErr != nil && ok:
			t.Fatalf("%d µs: decoded %v, pgx refuses it (%v)", us, e.Timestamp, wantErr)
		case wantErr == nil && !ok:
			t.Fatalf("%d µs: not decoded, pgx gives %v", us, want)
		case ok && e.Timestamp != want.UTC():
			t.Fatalf("%d µs: decoded %v, pgx gives %v", us, e.Timestamp, want.UTC())
		}
	}
}

// TestRowDecoderLeavesOddRowsToScan checks that a value of a length or a
// NULL the fast path does not expect is left to Scan.
func TestRowDecoderLeavesOddRowsToScan(t *testing.T) {
	t.Parallel()
	var d rowDecoder
	d.ok = true
	var e eventstore.Event
	if ok, err := d.decode(rawRow(make([]byte, 8)), &e); !ok || err != nil {
		t.Fatalf("a good row: ok %v, err %v", ok, err)
	}
	for i := range numColumns {
		for _, v := range [][]byte{nil, make([]byte, 3)} {
			vals := rawRow(make([]byte, 8))
			vals[i] = v
			if i == colExtra || (v != nil && columnOIDs[i] == pgtype.TextOID) {
				continue // NULL extras and text of any length are fine
			}
			if ok, _ := d.decode(vals, &e); ok {
				t.Errorf("column %d = %v decoded", i, v)
			}
		}
	}
	vals := rawRow(make([]byte, 8))
	vals[colPayload] = []byte{2, '{', '}'}
	if ok, _ := d.decode(vals, &e); ok {
		t.Error("jsonb version 2 decoded")
	}
	vals[colPayload] = []byte{1, '{', '}'}
	vals[colExtra] = []byte{1, '[', ']'}
	if ok, err := d.decode(vals, &e); !ok || err == nil {
		t.Errorf("bad meta: ok %v, err %v; want the error", ok, err)
	}
	if ok, _ := d.decode(vals[:numColumns-1], &e); ok {
		t.Error("a short row decoded")
	}
}

// rawRow is a row of binary values with the given timestamp.
func rawRow(ts []byte) [][]byte {
	id := uuid.New()
	return [][]byte{
		colPosition: binary.BigEndian.AppendUint64(nil, 7), colID: id[:], colStream: []byte("s-1"),
		colVersion: binary.BigEndian.AppendUint64(nil, 3), colType: []byte("t.x"), colSource: []byte("src"),
		colTarget: {}, colTenant: []byte("acme"), colCorrelation: {}, colCausation: {}, colProducer: {},
		colSchemaVersion: binary.BigEndian.AppendUint32(nil, 1), colTimestamp: ts,
		colPayload: []byte("\x01{}"), colExtra: nil,
	}
}

// TestCollectBuffers checks collect's pooled buffer: answers do not share
// it, the buffers in the pool hold no events, and an answer bigger than
// the pool keeps is whole.
func TestCollectBuffers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	s := readTestStore(t, u, pgx.QueryExecModeCacheStatement)
	for _, stream := range []string{"small-a", "small-b"} {
		if _, err := s.Append(ctx, stream, eventstore.NoStream, readTestEvents()...); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]eventstore.Event, 1000)
	for i := range big {
		big[i] = eventstore.Event{
			Type: "test.thing.happened", Source: "tests",
			Payload: json.RawMessage(fmt.Sprintf(`{"n": %d, "title": "big %d"}`, i, i)),
			Meta:    eventstore.Meta{SchemaVersion: 1, TenantID: "acme"},
		}
	}
	for range maxScratch/len(big) + 1 {
		if _, err := s.Append(ctx, "big", eventstore.Any, big...); err != nil {
			t.Fatal(err)
		}
	}

	a, err := s.ReadStream(ctx, "small-a", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	keep := append([]eventstore.Event(nil), a...)
	if _, err := s.ReadStream(ctx, "small-b", 1, 0); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, keep) {
		t.Fatal("a later read changed an earlier answer")
	}
	bigRead, err := s.ReadStream(ctx, "big", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := (maxScratch/len(big) + 1) * len(big); len(bigRead) != n {
		t.Fatalf("read %d events of %q, want %d", len(bigRead), "big", n)
	}
	for i, e := range bigRead {
		if e.Version != int64(i+1) || e.Stream != "big" {
			t.Fatalf("event %d: %s@%d", i, e.Stream, e.Version)
		}
	}
	if !reflect.DeepEqual(a, keep) {
		t.Fatal("a later read changed an earlier answer")
	}
	if _, err := s.ReadStream(ctx, "small-b", 1, 0); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		bp := scratch.Get().(*[]eventstore.Event)
		for i, e := range (*bp)[:cap(*bp)] {
			if !reflect.DeepEqual(e, eventstore.Event{}) {
				t.Fatalf("pooled buffer holds event %d: %s", i, e.ID)
			}
		}
		defer scratch.Put(bp)
	}
}

// TestFilteredReadsPassOverWhatMatchesNothing checks that a filtered read
// that finds no more matches up to the head moves past the events it
// looked at: a subscription's next wake-up, or a poller's next page, then
// starts at the head instead of going over them all again each time.
func TestFilteredReadsPassOverWhatMatchesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, pgtest.Pool(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	item := func(typ, tenant string) eventstore.Event {
		return eventstore.Event{Type: typ, Source: "tests", Payload: json.RawMessage(`{"name": "x"}`),
			Meta: eventstore.Meta{SchemaVersion: 1, TenantID: tenant}}
	}
	match, err := s.Append(ctx, "match", eventstore.NoStream, item(storetest.TypeRenamed, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]eventstore.Event, 300)
	for i := range noise {
		noise[i] = item(storetest.TypeAdded, "other")
	}
	res, err := s.Append(ctx, "noise", eventstore.NoStream, noise...)
	if err != nil {
		t.Fatal(err)
	}
	head := int64(res.Position().Commit)

	sub, err := s.Subscribe(ctx, eventstore.SubscribeOptions{Types: []string{storetest.TypeRenamed}, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, err := sub.Next(ctx)
	if err != nil || len(got) != 1 || got[0].ID != match.Events[0].ID {
		t.Fatalf("first Next: %d events, %v; want the one match", len(got), err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if evs, err := sub.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with no more matches: %d events, %v; want context.DeadlineExceeded", len(evs), err)
	}
	if after := sub.(*subscription).after; after != head {
		t.Fatalf("after a Next that found no match up to the head (%d), the subscription reads on from %d, want from the head", head, after+1)
	}
	later, err := s.Append(ctx, "match", eventstore.Exact(1), item(storetest.TypeAdded, "acme"), item(storetest.TypeRenamed, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sub.Next(ctx); err != nil || len(got) != 1 || got[0].ID != later.Events[1].ID {
		t.Fatalf("Next after a new match: %d events, %v; want the new match", len(got), err)
	}

	// ReadAll: a filtered page that is not full continues after the head.
	for _, opts := range []eventstore.ReadAllOptions{
		{From: eventstore.Pos(2), Types: []string{storetest.TypeRenamed}},
		{From: eventstore.Pos(2), TenantID: "acme", Limit: 5},
		{From: eventstore.Pos(2), TenantID: "acme", Types: []string{storetest.TypeRenamed}},
	} {
		p, err := s.ReadAll(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) == 0 || p.Events[len(p.Events)-1].ID != later.Events[1].ID || !p.End {
			t.Fatalf("ReadAll(%+v): %d events, End %v; want up to the last match, End", opts, len(p.Events), p.End)
		}
		if want := later.Position(); p.Next != eventstore.Pos(want.Commit+1) {
			t.Fatalf("ReadAll(%+v): Next %v, want %d, after the head", opts, p.Next, want.Commit+1)
		}
		p, err = s.ReadAll(ctx, eventstore.ReadAllOptions{From: p.Next, Types: opts.Types, TenantID: opts.TenantID})
		if err != nil || len(p.Events) != 0 || !p.End || p.Next.Compare(later.Position()) <= 0 {
			t.Fatalf("ReadAll after the head: %d events, End %v, Next %v, %v", len(p.Events), p.End, p.Next, err)
		}
	}
	// A full filtered page continues after its last event: what lies
	// beyond it has not been looked at.
	p, err := s.ReadAll(ctx, eventstore.ReadAllOptions{TenantID: "acme", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 2 || p.End || p.Next != eventstore.Pos(p.Events[1].Position.Commit+1) {
		t.Fatalf("full filtered page: %d events, End %v, Next %v; want 2, false, after the second", len(p.Events), p.End, p.Next)
	}
}
