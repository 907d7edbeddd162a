package cli

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"golang.org/x/term"
)

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled)
}

// printJSON writes v as one line of JSON.
func (a *app) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = a.io.Out.Write(b)
	return err
}

// table writes aligned columns to stdout.
type table struct {
	tw *tabwriter.Writer
}

func (a *app) newTable(header ...any) *table {
	t := &table{tw: tabwriter.NewWriter(a.io.Out, 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// isTerminal reports whether w is an interactive terminal (progress bars
// are drawn only there; elsewhere long jobs log plain lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// textOf renders a database value of a column of type oid for a table
// cell. A date column prints as a date; any other time as RFC 3339 in UTC,
// midnight included.
func textOf(v any, oid uint32) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		if oid == pgtype.DateOID {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339)
	case driver.Valuer:
		if dv, err := x.Value(); err == nil {
			return textOf(dv, oid)
		}
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	case [16]byte:
		return uuid.UUID(x).String()
	}
	return fmt.Sprint(v)
}
