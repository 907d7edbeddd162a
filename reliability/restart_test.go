package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

// TestDatabaseRestartUnderLoad stops the database under load, in fast mode
// (a clean shutdown that ends every session) and in immediate mode (a
// crash, with WAL recovery at the next start), several times, at random
// moments, while eight writers append and a live subscription and the
// audit projection follow the log.
//
// The writers use one Store; the subscription and the projection use a
// second Store on its own pool (as another process would), whose safety
// poll is switched off, so they can only learn of new events through
// LISTEN/NOTIFY: catching up after the faults proves the LISTEN connection
// came back by itself.
//
// At the end: every acknowledged append is in the log exactly once, at the
// positions its acknowledgement gave; every abandoned one is stored
// entirely or not at all; the subscription and the audit read model hold
// the whole log exactly once; each writer had appends acknowledged after
// the last restart, with no new Store.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	for _, mode := range []pgcluster.Mode{pgcluster.Fast, pgcluster.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			restartUnderLoad(t, mode, scale(3))
		})
	}
}

func restartUnderLoad(t *testing.T, mode pgcluster.Mode, restarts int) {
	cluster := pgcluster.Start(t)
	reg := registry(t)
	writePool := openPool(t, cluster.URL(""), 8)
	readPool := openPool(t, cluster.URL(""), 8)
	writer := openStore(t, writePool, reg, postgres.Options{})
	reader := openStore(t, readPool, reg, postgres.Options{SkipMigrate: true, PollInterval: time.Hour})

	fl := startFollower(t, reader)
	au := startAudit(t, readPool, reader, reg)
	led := newLedger()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	f := startFleet(writer, led, 8, 4, seed)

	for i := range restarts {
		// Let the load run, and insist on progress since the last fault.
		before := f.totalAcks()
		time.Sleep(time.Duration(300+rng.IntN(600)) * time.Millisecond)
		waitFor(t, 20*time.Second, func() bool { return f.totalAcks() > before+20 },
			func() string { return fmt.Sprintf("no appends acknowledged after restart %d", i) })
		down := time.Duration(100+rng.IntN(500)) * time.Millisecond
		if err := cluster.Restart(mode, down); err != nil {
			t.Fatal(err)
		}
	}
	f.waitEachWriter(t, f.snapshot(), 3, 20*time.Second)
	f.finish()
	listenDelivers(t, writer, led, fl)
	// Every append that will ever land has landed once the writing store's
	// committers have stopped.
	writer.Close()

	rows := readLog(t, writePool)
	waitFor(t, 30*time.Second, func() bool { return fl.position.Load() >= uint64(len(rows)) },
		func() string {
			fl.mu.Lock()
			defer fl.mu.Unlock()
			return fmt.Sprintf("the subscription is at %d, the log at %d (%d errors, last: %s)", fl.position.Load(), len(rows), fl.errs, fl.lastErr)
		})
	fl.stop()
	fg := verifyLog(t, rows, led)
	verifyFollower(t, rows, fl, &fg)
	verifyAudit(t, readPool, rows, &fg)
	au.stop()
	fg.Faults = restarts
	fg.Extra = map[string]any{"mode": string(mode)}
	if fg.Lost != 0 || fg.Duplicated != 0 || fg.Partial != 0 {
		t.Errorf("lost %d, duplicated %d, partly written %d", fg.Lost, fg.Duplicated, fg.Partial)
	}
	if fg.FailedAttempts == 0 {
		t.Errorf("no append failed: the restarts did not hit the writers, so the test proved nothing")
	}
	report(t, fg)
}
