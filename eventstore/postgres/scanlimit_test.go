package postgres_test

import (
	"context"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/schemas"
)

// TestReadAllScanLimit: a filtered page looks at no more than ScanLimit
// events (the window of positions it covers), instead of scanning the
// whole log for events that match little of it.
func TestReadAllScanLimit(t *testing.T) {
	t.Parallel()
	storetest.RunScanLimit(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			s, err := postgres.New(context.Background(), pgtest.Pool(t), reg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}
