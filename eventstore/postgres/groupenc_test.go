package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/pgtest"
)

// encGroup is a group of appends with every kind of value (readTestEvents),
// several to one stream, with each kind of expected version, some of them
// refused (a stale exact version, NoStream on a stream the group made).
func encGroup(t *testing.T, s *Store) []*request {
	t.Helper()
	evs := readTestEvents()
	shapes := []struct {
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
	}{
		{"enc-a", eventstore.NoStream, evs[:2]},
		{"enc-b", eventstore.Any, evs[2:3]},
		{"enc-a", eventstore.ExpectedVersion(2), evs[3:]},
		{"enc-a", eventstore.ExpectedVersion(1), evs[:1]}, // stale: refused
		{"enc-b", eventstore.StreamExists, evs[1:2]},
		{"enc-c", eventstore.StreamExists, evs[1:2]}, // no such stream: refused
		{"enc-b", eventstore.NoStream, evs[4:]},      // made earlier in the group: refused
		{"enc-ünïcødé 日本語 '\\\"", eventstore.Any, evs},
	}
	group := make([]*request, len(shapes))
	for i, sh := range shapes {
		p, err := s.validator.Check(sh.stream, sh.expected, sh.events)
		if err != nil {
			t.Fatal(err)
		}
		group[i] = &request{stream: sh.stream, expected: sh.expected, events: p}
	}
	return group
}

// The binary arguments of the common path (callAppendBinary) and pgx's
// encoding of the same arguments (queryAppendArgs, the path of the modes
// that do not prepare) give the same verdicts and store the same rows,
// byte for byte, for a group with every kind of value.
func TestBinaryArgumentsStoreWhatPgxEncodingStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	type stored struct {
		verdicts []verdict
		rows     []string
	}
	run := func(call func(context.Context, *pgx.Conn, []*request, int64, string, time.Time) ([]verdict, error), mode pgx.QueryExecMode) stored {
		u, _ := pgtest.Schema(t)
		s := readTestStore(t, u, mode)
		group := encGroup(t, s)
		// The same ids on both sides, so that the rows compare whole.
		for i, r := range group {
			for j := range r.events {
				r.events[j].ID = [16]byte{byte(i), byte(j), 0x7e, 0x57}
			}
		}
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		v, err := call(ctx, conn.Conn(), group, s.lockKey, s.channel, now)
		if err != nil {
			t.Fatal(err)
		}
		var out stored
		out.verdicts = v
		rows, err := conn.Query(ctx, `SELECT row_to_json(e)::text FROM events e ORDER BY position`)
		if err != nil {
			t.Fatal(err)
		}
		out.rows, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	bin := run(callAppendBinary, pgx.QueryExecModeCacheStatement)
	args := run(queryAppendArgs, pgx.QueryExecModeCacheDescribe)

	want := []bool{true, true, true, false, true, false, false, true}
	if len(bin.verdicts) != len(want) {
		t.Fatalf("%d verdicts, want %d", len(bin.verdicts), len(want))
	}
	for i, v := range bin.verdicts {
		if v.accepted != want[i] {
			t.Errorf("append %d: accepted %v, want %v (%+v)", i, v.accepted, want[i], v)
		}
		if v != args.verdicts[i] {
			t.Errorf("append %d: binary verdict %+v, pgx-encoded %+v", i, v, args.verdicts[i])
		}
	}
	if len(bin.rows) != 2+1+2+1+len(readTestEvents()) {
		t.Fatalf("binary path stored %d rows", len(bin.rows))
	}
	if len(bin.rows) != len(args.rows) {
		t.Fatalf("binary path stored %d rows, pgx-encoded %d", len(bin.rows), len(args.rows))
	}
	for i := range bin.rows {
		if bin.rows[i] != args.rows[i] {
			t.Errorf("row %d differs:\nbinary: %.300s\npgx:    %.300s", i, bin.rows[i], args.rows[i])
		}
	}
}

// encodeGroup sizes its buffer exactly: the arguments of a group take
// two allocations however many events it has, and the buffer never
// grows (which would copy the payloads again).
func TestEncodeGroupAllocatesOnce(t *testing.T) {
	u, _ := pgtest.Schema(t)
	s := readTestStore(t, u, pgx.QueryExecModeCacheStatement)
	group := encGroup(t, s)
	now := time.Now().UTC()
	enc := encodeGroup(group, s.lockKey, s.channel, now)
	if len(enc.values) != 18 {
		t.Fatalf("%d arguments, want eventstream_append's 18", len(enc.values))
	}
	if allocs := testing.AllocsPerRun(20, func() { encodeGroup(group, s.lockKey, s.channel, now) }); allocs > 2 {
		t.Fatalf("encodeGroup allocated %.0f times for a group, want at most 2 (its buffer was not sized exactly)", allocs)
	}
}

// Other code on a pooled connection may drop the session's prepared
// statements (DISCARD ALL, DEALLOCATE ALL); the next group prepares the
// append statement again instead of failing.
func TestAppendAfterTheStatementIsDeallocated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	// One session: the one whose statements are dropped.
	s := readTestStore(t, u+"&pool_max_conns=1", pgx.QueryExecModeCacheStatement)
	pool := s.pool
	ev := readTestEvents()[1]
	for i, drop := range []string{"", "DEALLOCATE ALL", "DISCARD ALL", ""} {
		if drop != "" {
			if _, err := pool.Exec(ctx, drop, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
		}
		res, err := s.Append(ctx, "dealloc", eventstore.Any, ev)
		if err != nil {
			t.Fatalf("append %d (after %q): %v", i, drop, err)
		}
		if res.Events[0].Version != int64(i+1) {
			t.Fatalf("append %d: version %d, want %d", i, res.Events[0].Version, i+1)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream = 'dealloc'`, pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("%d events stored, want 4", n)
	}
}

// A row of the wrong shape is an error, not a verdict read from the wrong
// bytes.
func TestReadVerdictsRefusesAnUnexpectedRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	s := readTestStore(t, u, pgx.QueryExecModeCacheStatement)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, sql := range []string{
		`SELECT true, 1::bigint, 2::bigint`,             // a column short
		`SELECT true, 1::integer, 2::bigint, 3::bigint`, // a column of another type
	} {
		rr := conn.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, []int16{1})
		v, _, err := readVerdicts(rr, 1)
		if err == nil || !strings.Contains(err.Error(), "unexpected shape") {
			t.Fatalf("%s: %+v, %v; want the unexpected-shape error", sql, v, err)
		}
	}
}

// queryTrace records what a pgx.QueryTracer is told.
type queryTrace struct {
	mu    sync.Mutex
	calls []traced
}

type traced struct {
	sql   string
	ended bool
	tag   string
	err   error
}

type traceKey struct{}

func (q *queryTrace) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, traced{sql: d.SQL})
	return context.WithValue(ctx, traceKey{}, len(q.calls)-1)
}

func (q *queryTrace) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := ctx.Value(traceKey{}).(int)
	q.calls[i].ended, q.calls[i].tag, q.calls[i].err = true, d.CommandTag.String(), d.Err
}

// appendCalls returns the traced calls of the group statement.
func (q *queryTrace) appendCalls() []traced {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []traced
	for _, c := range q.calls {
		if c.sql == callAppend {
			out = append(out, c)
		}
	}
	return out
}

// The binary path is not hidden from a pool's pgx.QueryTracer: each group
// is traced as a query, started and ended, with its command tag, or with
// the error that failed it.
func TestBinaryCallIsTraced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _ := pgtest.Schema(t)
	tr := &queryTrace{}
	s := readTestStoreWith(t, u, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = tr })
	ev := readTestEvents()[1]
	res, err := s.Append(ctx, "traced-a", eventstore.NoStream, ev)
	if err != nil {
		t.Fatal(err)
	}
	calls := tr.appendCalls()
	if len(calls) != 1 || !calls[0].ended || calls[0].err != nil || calls[0].tag != "SELECT 1" {
		t.Fatalf("traced group calls %+v, want one, ended with SELECT 1 and no error", calls)
	}
	// The same id in another stream: the group statement fails on the id
	// index (then the careful path refuses the append as a duplicate).
	dup := ev
	dup.ID = res.Events[0].ID
	if _, err := s.Append(ctx, "traced-b", eventstore.NoStream, dup); !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("append of a stored id to another stream: %v, want a duplicate", err)
	}
	calls = tr.appendCalls()
	var pe *pgconn.PgError
	if len(calls) != 2 || !calls[1].ended || !errors.As(calls[1].err, &pe) || pe.Code != "23505" {
		t.Fatalf("traced group calls %+v, want a second, ended with the unique violation", calls)
	}
}
