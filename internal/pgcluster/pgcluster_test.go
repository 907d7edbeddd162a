package pgcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/internal/pgcluster"
)

// TestCommittedRowsSurviveEveryStop checks what the fault tests rely on:
// the cluster accepts connections, is down while stopped, and keeps every
// committed row across a fast stop and a crash (immediate stop).
func TestCommittedRowsSurviveEveryStop(t *testing.T) {
	c := pgcluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL(""))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func() int {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL(""))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	var fsync string
	conn, err := pgx.Connect(ctx, c.URL(""))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if fsync != "on" {
		t.Fatalf("fsync = %s, want on", fsync)
	}

	exec(`CREATE TABLE t (n int)`)
	exec(`INSERT INTO t VALUES (1)`)
	for i, mode := range []pgcluster.Mode{pgcluster.Fast, pgcluster.Immediate} {
		if err := c.Stop(mode); err != nil {
			t.Fatal(err)
		}
		if c.Running() {
			t.Fatal("Running after Stop")
		}
		if conn, err := pgx.Connect(ctx, c.URL("")); err == nil {
			conn.Close(ctx)
			t.Fatalf("connected to a stopped cluster (%s)", mode)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if got, want := count(), i+1; got != want {
			t.Fatalf("after %s stop: %d rows, want %d", mode, got, want)
		}
		exec(`INSERT INTO t VALUES (2)`)
	}
}

// TestPasswordClusterRefusesAWrongPassword checks the password option the
// secrets tests use: the right password connects, a wrong one does not.
func TestPasswordClusterRefusesAWrongPassword(t *testing.T) {
	c := pgcluster.Start(t, pgcluster.Options{Password: "s3cret-Pa55"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(""))
	if err != nil {
		t.Fatalf("connect with the password: %v", err)
	}
	conn.Close(ctx)
	if conn, err := pgx.Connect(ctx, c.URLAs(pgcluster.Superuser, "wrong", "")); err == nil {
		conn.Close(ctx)
		t.Fatal("a wrong password connected")
	}
}
