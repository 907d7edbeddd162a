package cli

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/brainhq/eventstream/internal/pgtest"
)

func TestTextOfPrintsOnlyDatesDateOnly(t *testing.T) {
	plus2 := time.FixedZone("UTC+2", 2*60*60)
	cases := []struct {
		name string
		v    any
		oid  uint32
		want string
	}{
		{"date", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), pgtype.DateOID, "2026-03-01"},
		{"pgtype.Date", pgtype.Date{Time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Valid: true}, pgtype.DateOID, "2026-03-01"},
		{"timestamptz at local midnight", time.Date(2026, 3, 1, 0, 0, 0, 0, plus2), pgtype.TimestamptzOID, "2026-02-28T22:00:00Z"},
		{"timestamptz at UTC midnight", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), pgtype.TimestamptzOID, "2026-03-01T00:00:00Z"},
		{"timestamp at midnight", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), pgtype.TimestampOID, "2026-03-01T00:00:00Z"},
		{"timestamptz", time.Date(2026, 3, 1, 13, 4, 5, 0, plus2), pgtype.TimestamptzOID, "2026-03-01T11:04:05Z"},
		{"null", nil, pgtype.DateOID, ""},
	}
	for _, c := range cases {
		if got := textOf(c.v, c.oid); got != c.want {
			t.Errorf("%s: textOf(%v) = %q, want %q", c.name, c.v, got, c.want)
		}
	}
}

// TestRunQueryPrintsMidnightTimestampsInFull runs a query through the
// demo's runQuery: a timestamptz at midnight of the process's zone keeps
// its time; only the date column prints as a date.
func TestRunQueryPrintsMidnightTimestampsInFull(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	a := &app{io: IO{Out: io.Discard, Err: io.Discard}, asJSON: true}
	midnight := time.Date(2026, 3, 1, 0, 0, 0, 0, time.Local)
	q := demoQuery{Title: "times", SQL: `SELECT date '2026-03-01' AS day, $1::timestamptz AS at`}
	if err := a.runQuery(context.Background(), &database{Pool: pool}, &q, midnight); err != nil {
		t.Fatal(err)
	}
	want := []string{"2026-03-01", midnight.UTC().Format(time.RFC3339)}
	if len(q.Rows) != 1 || q.Rows[0][0] != want[0] || q.Rows[0][1] != want[1] {
		t.Fatalf("rows %q, want [%q]", q.Rows, want)
	}
}
