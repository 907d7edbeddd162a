package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
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
// background load.
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

	seen := map[uuid.UUID]struct{}{}
	first := true
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
			if first {
				// The first pass also proves, through the store's own read
				// path, that every claimed event is there once.
				for _, e := range page.Events {
					seen[e.ID] = struct{}{}
				}
			}
			if page.End || len(page.Events) == 0 {
				break
			}
			from = page.Next
		}
		if first {
			first = false
			for _, id := range cl.all() {
				if _, ok := seen[id]; !ok {
					return n, &VerifyError{Table: "ReadAll", Claimed: total, Stored: int64(len(seen)), Missing: 1, SampleMissing: []uuid.UUID{id}}
				}
			}
			clear(seen)
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
	rep.Ours = phase(parts[0].t)
	ours := phase(parts[2].t)
	rep.OursExtra = &ours
	rep.Ours.Rounds, rep.OursExtra.Rounds = rounds, rounds
	if !cfg.SkipRaw {
		raw, rawS := phase(parts[1].t), phase(parts[3].t)
		raw.Rounds, rawS.Rounds = rounds, rounds
		rep.Raw, rep.RawExtra = &raw, &rawS
	}
	if readErr != nil {
		return readErr
	}
	rep.note("first ReadAll pass checked every claimed id through the store's read path")
	rep.note("flat figures: the whole log in pages of %d; stream_*: one stream of %d events in pages of %d", readPage, longTotal, readPage)
	if rounds > 1 {
		rep.note("ours and raw alternated in %d rounds of whole passes; each side's figures add its rounds up", rounds)
	}
	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
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
