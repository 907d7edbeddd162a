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
