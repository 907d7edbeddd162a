package projections_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/projections"
	"github.com/brainhq/eventstream/projections/audit"
)

// OnPublish lets a deployment grant a reader role access to every new
// generation, so the role keeps reading across a rebuild; an error from it
// aborts the swap and leaves readers on the old generation.
func TestOnPublishKeepsReadersAcrossARebuild(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 100, 20)
	pool := database(t)
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "es_reader_" + hex.EncodeToString(b[:])
	if _, err := pool.Exec(ctx, `CREATE ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	var pubs []projections.Publication
	fail := false
	cfg := fastConfig()
	cfg.OnPublish = func(ctx context.Context, tx pgx.Tx, p projections.Publication) error {
		if fail {
			return errors.New("grants refused")
		}
		pubs = append(pubs, p)
		r := pgx.Identifier{role}.Sanitize()
		for _, q := range []string{
			`GRANT USAGE ON SCHEMA ` + pgx.Identifier{p.Home}.Sanitize() + ` TO ` + r,
			`GRANT USAGE ON SCHEMA ` + pgx.Identifier{p.Schema}.Sanitize() + ` TO ` + r,
			`GRANT SELECT ON ALL TABLES IN SCHEMA ` + pgx.Identifier{p.Schema}.Sanitize() + ` TO ` + r,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		for _, table := range p.Tables {
			if _, err := tx.Exec(ctx, `GRANT SELECT ON `+pgx.Identifier{p.Home, table}.Sanitize()+` TO `+r); err != nil {
				return err
			}
		}
		return nil
	}
	rt := newRuntime(t, pool, store, cfg, audit.Projection())
	if _, err := rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	readAs := func() (int, error) {
		var n int
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n)
		})
		return n, err
	}
	if n, err := readAs(); err != nil || n != 100 {
		t.Fatalf("the reader role before the rebuild: %d rows, %v", n, err)
	}
	if len(pubs) != 1 || pubs[0].Generation != 1 || len(pubs[0].Tables) != 1 || pubs[0].Tables[0] != "audit_events" {
		t.Fatalf("publications: %+v", pubs)
	}

	fail = true
	if _, err := rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{}); err == nil {
		t.Fatal("the swap went ahead although OnPublish failed")
	}
	lag, err := rt.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lag[0].Generation != 1 || lag[0].Rebuilding != 2 {
		t.Fatalf("after a refused swap: %+v", lag[0])
	}
	fail = false
	if res, err := rt.Rebuild(ctx, audit.Name, projections.RebuildOptions{}); err != nil || !res.Resumed || res.Generation != 2 {
		t.Fatalf("rebuild after the fix: %+v %v", res, err)
	}
	if n, err := readAs(); err != nil || n != 100 {
		t.Fatalf("the reader role after the rebuild: %d rows, %v", n, err)
	}
}

// An error from OnPublish when Migrate installs a projection rolls the
// install back whole: no view, no active generation, no generation
// schema; the next Migrate, with a hook that works, installs generation 1.
func TestOnPublishRefusalUndoesTheInstall(t *testing.T) {
	t.Parallel()
	store := logStore(t)
	fill(t, store, 40, 20)
	pool := database(t)
	ctx := context.Background()
	refused := errors.New("grants refused")
	fail := true
	var pubs []projections.Publication
	cfg := fastConfig()
	cfg.OnPublish = func(ctx context.Context, tx pgx.Tx, p projections.Publication) error {
		if fail {
			return refused
		}
		pubs = append(pubs, p)
		return nil
	}
	rt, err := projections.New(pool, store, registry(t), cfg, audit.Projection())
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Migrate(ctx); !errors.Is(err, refused) {
		t.Fatalf("Migrate with a failing OnPublish: %v, want %v", err, refused)
	}
	var view bool
	var active, generations, schemas int
	err = pool.QueryRow(ctx, `SELECT to_regclass('audit_events') IS NOT NULL,
		(SELECT count(*) FROM projection_state WHERE projection = $1 AND active_generation IS NOT NULL),
		(SELECT count(*) FROM projection_generations WHERE projection = $1),
		(SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, current_schema() || '__'))`, audit.Name).
		Scan(&view, &active, &generations, &schemas)
	if err != nil {
		t.Fatal(err)
	}
	if view || active != 0 || generations != 0 || schemas != 0 {
		t.Fatalf("after a refused install: view %v, active generations %d, generations %d, generation schemas %d; want none",
			view, active, generations, schemas)
	}
	if _, err := rt.CatchUp(ctx, audit.Name, 0); !errors.Is(err, projections.ErrNotMigrated) {
		t.Fatalf("CatchUp after a refused install: %v, want ErrNotMigrated", err)
	}

	fail = false
	if err := rt.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with a working OnPublish: %v", err)
	}
	if len(pubs) != 1 || pubs[0].Generation != 1 || len(pubs[0].Tables) != 1 || pubs[0].Tables[0] != "audit_events" {
		t.Fatalf("publications: %+v", pubs)
	}
	lag, err := rt.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lag[0].Generation != 1 || lag[0].Rebuilding != 0 {
		t.Fatalf("after the install: %+v", lag[0])
	}
	if _, err := rt.CatchUp(ctx, audit.Name, 0); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 40 {
		t.Fatalf("audit_events after the install: %d rows, %v; want 40", n, err)
	}
}
