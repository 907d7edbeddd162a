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

// readScenario fills the log (with one long stream), then reads the whole
// log page by page and the long stream page by page, for Duration each.
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

	cfg.Logger.Info("bench: our phase: read the log", "events", total)
	seen := map[uuid.UUID]struct{}{}
	first := true
	t, err := r.measured(ctx, pool, "ours", func() (timed, error) {
		return readPasses(ctx, cfg.Duration, total, func(ctx context.Context, rec *recorder) (int64, error) {
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
		})
	})
	rep.Ours = phase(t)
	if err != nil {
		return fmt.Errorf("bench: read, our phase (log): %w", err)
	}
	rep.note("first ReadAll pass checked every claimed id through the store's read path")

	if longTotal == 0 {
		return fmt.Errorf("%w: read needs stream events >= 1", ErrConfig)
	}
	cfg.Logger.Info("bench: our phase: read the long stream", "events", longTotal)
	ts, err := r.measured(ctx, pool, "ours-stream", func() (timed, error) {
		return readPasses(ctx, cfg.Duration, longTotal, func(ctx context.Context, rec *recorder) (int64, error) {
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
		})
	})
	ours := phase(ts)
	rep.OursExtra = &ours
	if err != nil {
		return fmt.Errorf("bench: read, our phase (stream): %w", err)
	}
	rep.note("flat figures: the whole log in pages of %d; stream_*: one stream of %d events in pages of %d", readPage, longTotal, readPage)
	r.release(store, pool)

	if cfg.SkipRaw {
		rep.note("raw ceiling skipped (SkipRaw)")
		return nil
	}
	rawPool, err := r.pool(ctx, 4)
	if err != nil {
		return err
	}
	if _, err := r.loadRaw(ctx, rawPool, plan); err != nil {
		return err
	}
	cfg.Logger.Info("bench: raw phase: read")
	rt, err := r.measured(ctx, rawPool, "raw", func() (timed, error) {
		return readPasses(ctx, cfg.Duration, total, func(ctx context.Context, rec *recorder) (int64, error) {
			return rawReadAll(ctx, rawPool, rec)
		})
	})
	raw := phase(rt)
	rep.Raw = &raw
	if err != nil {
		return fmt.Errorf("bench: read, raw phase (log): %w", err)
	}
	rts, err := r.measured(ctx, rawPool, "raw-stream", func() (timed, error) {
		return readPasses(ctx, cfg.Duration, longTotal, func(ctx context.Context, rec *recorder) (int64, error) {
			return rawReadStream(ctx, rawPool, rec)
		})
	})
	rawS := phase(rts)
	rep.RawExtra = &rawS
	if err != nil {
		return fmt.Errorf("bench: read, raw phase (stream): %w", err)
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
