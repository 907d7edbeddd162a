package memory_test

import (
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/schemas"
)

// TestReadAllScanLimit: a filtered page looks at no more than ScanLimit
// events of the log.
func TestReadAllScanLimit(t *testing.T) {
	storetest.RunScanLimit(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			s, err := memory.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}
