package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// readPage is the page size of both sides of read (the store's default).
const readPage = eventstore.DefaultPageSize

// minReadTime is how long read repeats its passes when no duration is
// given, so that one figure is not a fraction of a second.
const minReadTime = 3 * time.Second

// readPasses repeats pass (one full read, returning how many events it
// read) until the duration is over, at least once, recording each page.
func readPasses(ctx context.Context, d time.Duration, want int64, pass func(ctx context.Context, rec *recorder) (int64, error)) (timed, error) {
	if d <= 0 {
		d = minReadTime
	}
	return timedRun(func(rec *recorder) error {
		for {
			n, err := pass(ctx, rec)
			if err != nil {
				return err
			}
			if n != want {
				return &VerifyError{Table: "read pass", Claimed: want, Stored: n, Missing: max(want-n, 0), Unexpected: max(n-want, 0)}
			}
			if time.Since(rec.start) >= d {
				return nil
			}
		}
	})
}

// readScenario fills the log (with one long stream) and the raw table
// with the same rows, then reads the whole log page by page and the long
// stream page by page, ours and raw alternating in Config.Rounds rounds
// (each side reading for Duration in all), so that both meet the same
// background load. Each timed pass of either side only reads; after the
// rounds, an untimed pass checks that our store's read path returns every
// claimed event exactly once (checkReadAll).
func (r *run) readScenario(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	rep.Op = "read page"
	longEvents := min(cfg.StreamEvents, cfg.LogEvents)
	plan := r.loadPlan(longEvents)
	store, pool, err := r.store(ctx)
	if err != nil {
		return err
	}
	cl, err := r.loadLog(ctx, rep, store, pool, plan)
	if err != nil {
		return err
	}
	total := int64(len(cl.all()))
	longTotal := plan.longOps * int64(cfg.EventsPerAppend)
	if longTotal == 0 {
		return fmt.Errorf("%w: read needs stream events >= 1", ErrConfig)
	}
	var rawPool *pgxpool.Pool
	if !cfg.SkipRaw {
		if rawPool, err = r.pool(ctx, 4); err != nil {
			return err
		}
		if _, err := r.loadRaw(ctx, rawPool, plan); err != nil {
			return err
		}
	}

	// Every pass of ours, like every pass of raw, only reads: the check
	// that the store's read path returns every claimed event once is a
	// pass of its own after the timed rounds (checkReadAll).
	oursLog := func(ctx context.Context, rec *recorder) (int64, error) {
		var n int64
		from := eventstore.Start
		for {
			began := time.Now()
			page, err := store.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: readPage})
			if err != nil {
				return n, fmt.Errorf("bench: read the log: %w", err)
			}
			end := time.Now()
			rec.record(len(page.Events), end.Sub(began), end)
			n += int64(len(page.Events))
			if page.End || len(page.Events) == 0 {
				break
			}
			from = page.Next
		}
		return n, nil
	}
	oursStream := func(ctx context.Context, rec *recorder) (int64, error) {
		var n int64
		from := int64(1)
		for {
			began := time.Now()
			evs, err := store.ReadStream(ctx, longStream, from, readPage)
			if err != nil {
				return n, fmt.Errorf("bench: read stream %s: %w", longStream, err)
			}
			end := time.Now()
			rec.record(len(evs), end.Sub(began), end)
			n += int64(len(evs))
			if len(evs) < readPage {
				break
			}
			from = evs[len(evs)-1].Version + 1
		}
		return n, nil
	}

	// The four parts, each a side of one of the two reads.
	type part struct {
		side string
		pool *pgxpool.Pool
		want int64
		pass func(ctx context.Context, rec *recorder) (int64, error)
		t    timed
	}
	parts := []*part{
		{side: "ours", pool: pool, want: total, pass: oursLog},
		{side: "raw", pool: rawPool, want: total, pass: func(ctx context.Context, rec *recorder) (int64, error) { return rawReadAll(ctx, rawPool, rec) }},
		{side: "ours-stream", pool: pool, want: longTotal, pass: oursStream},
		{side: "raw-stream", pool: rawPool, want: longTotal, pass: func(ctx context.Context, rec *recorder) (int64, error) { return rawReadStream(ctx, rawPool, rec) }},
	}
	rounds := max(cfg.Rounds, 1)
	d := cfg.Duration
	if d <= 0 {
		d = minReadTime
	}
	var readErr error
rounds:
	for k := range rounds {
		for _, p := range parts {
			if p.pool == nil {
				continue // SkipRaw
			}
			side := p.side
			if rounds > 1 {
				side = fmt.Sprintf("%s-r%d", p.side, k+1)
			}
			cfg.Logger.Info("bench: read", "side", side, "round", k+1, "of", rounds)
			t, err := r.measured(ctx, p.pool, side, func() (timed, error) {
				return readPasses(ctx, d/time.Duration(rounds), p.want, p.pass)
			})
			p.t = p.t.then(t)
			if err != nil {
				readErr = fmt.Errorf("bench: read (%s): %w", p.side, err)
				break rounds
			}
		}
	}
	// A part that never ran (a pass before it failed) has no record.
	phaseOf := func(t timed) Phase {
		if t.rec == nil {
			return Phase{}
		}
		return phase(t)
	}
	rep.Ours = phaseOf(parts[0].t)
	ours := phaseOf(parts[2].t)
	rep.OursExtra = &ours
	rep.Ours.Rounds, rep.OursExtra.Rounds = rounds, rounds
	if !cfg.SkipRaw {
		raw, rawS := phaseOf(parts[1].t), phaseOf(parts[3].t)
		raw.Rounds, rawS.Rounds = rounds, rounds
		rep.Raw, rep.RawExtra = &raw, &rawS
	}
	if readErr != nil {
		return readErr
	}
	if r.cfg.beforeReadCheck != nil {
		if err := r.cfg.beforeReadCheck(ctx, pool); err != nil {
			return fmt.Errorf("bench: test hook: %w", err)
		}
	}
	if err := r.checkReadAll(ctx, store, cl.list()); err != nil {
		return err
	}
	rep.note("after the timed rounds, an untimed ReadAll pass read every claimed id back through the store's read path exactly once")
	rep.note("flat figures: the whole log in pages of %d; stream_*: one stream of %d events in pages of %d", readPage, longTotal, readPage)
	if rounds > 1 {
		rep.note("ours and raw alternated in %d rounds of whole passes; each side's figures add its rounds up", rounds)
	}
	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
	}
	return nil
}

// checkReadAll reads the whole log once through the store's read path
// (ReadAll in pages, as the timed passes do), outside every timed phase,
// and checks that it returns every claimed id exactly once, in the stream
// it was appended to, and nothing else. The SQL check after the load (Verify) looks at the table; this one
// proves that the path the scenario times returns what is there.
func (r *run) checkReadAll(ctx context.Context, store *postgres.Store, claimed []claim) error {
	ve := &VerifyError{Table: "ReadAll", Claimed: int64(len(claimed))}
	reads := make(map[uuid.UUID]int, len(claimed))
	claims := make(map[uuid.UUID]claim, len(claimed))
	for _, c := range claimed {
		if _, dup := reads[c.id]; dup {
			ve.ClaimedTwice++
		}
		reads[c.id] = 0
		claims[c.id] = c
	}
	from := eventstore.Start
	for {
		page, err := store.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: readPage})
		if err != nil {
			return fmt.Errorf("bench: check the log through ReadAll: %w", err)
		}
		if r.cfg.readChecked != nil {
			r.cfg.readChecked(r.openWindow(), len(page.Events))
		}
		for i := range page.Events {
			ve.Stored++
			n, ok := reads[page.Events[i].ID]
			switch {
			case !ok:
				ve.Unexpected++
				continue
			case n == 1:
				ve.Duplicated++
			}
			c := claims[page.Events[i].ID]
			if page.Events[i].Stream != c.stream {
				ve.WrongStream++
			}
			if c.version > 0 && page.Events[i].Version != c.version {
				ve.WrongVersion++
			}
			reads[page.Events[i].ID] = n + 1
		}
		if page.End || len(page.Events) == 0 {
			break
		}
		from = page.Next
	}
	for _, c := range claimed {
		id := c.id
		if reads[id] == 0 {
			reads[id] = -1 // counted once, if claimed twice
			ve.Missing++
			if len(ve.SampleMissing) < 5 {
				ve.SampleMissing = append(ve.SampleMissing, id)
			}
		}
	}
	if ve.failed() {
		return ve
	}
	return nil
}

const rawSelect = `SELECT position, id, stream, version, type, source, target, tenant_id, correlation_id, causation_id,
	producer, schema_version, "timestamp", payload, meta FROM raw_events `

// rawRecord is a row of raw_events scanned into typed values, as our
// store scans an event.
type rawRecord struct {
	pos, version                             int64
	id                                       uuid.UUID
	stream, typ, source, tenant              string
	target, correlation, causation, producer *string
	schemaVersion                            int32
	ts                                       time.Time
	payload, meta                            []byte
}

func rawPage(ctx context.Context, pool *pgxpool.Pool, rec *recorder, sql string, args ...any) ([]rawRecord, error) {
	began := time.Now()
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]rawRecord, 0, readPage)
	for rows.Next() {
		var x rawRecord
		if err := rows.Scan(&x.pos, &x.id, &x.stream, &x.version, &x.typ, &x.source, &x.target, &x.tenant, &x.correlation,
			&x.causation, &x.producer, &x.schemaVersion, &x.ts, &x.payload, &x.meta); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	end := time.Now()
	rec.record(len(out), end.Sub(began), end)
	return out, nil
}

func rawReadAll(ctx context.Context, pool *pgxpool.Pool, rec *recorder) (int64, error) {
	var n, from int64
	for {
		page, err := rawPage(ctx, pool, rec, rawSelect+`WHERE position > $1 ORDER BY position LIMIT $2`, from, readPage)
		if err != nil {
			return n, fmt.Errorf("bench: raw read: %w", err)
		}
		n += int64(len(page))
		if len(page) < readPage {
			return n, nil
		}
		from = page[len(page)-1].pos
	}
}

func rawReadStream(ctx context.Context, pool *pgxpool.Pool, rec *recorder) (int64, error) {
	var n, from int64
	for {
		page, err := rawPage(ctx, pool, rec, rawSelect+`WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3`, longStream, from, readPage)
		if err != nil {
			return n, fmt.Errorf("bench: raw stream read: %w", err)
		}
		n += int64(len(page))
		if len(page) < readPage {
			return n, nil
		}
		from = page[len(page)-1].version
	}
}
