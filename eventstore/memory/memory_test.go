package memory_test

import (
	"testing"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/memory"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/schemas"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			s, err := memory.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Features: eventstore.Features{GaplessPositions: true, TenantFilter: true},
	})
}

func TestNewNeedsRegistry(t *testing.T) {
	if _, err := memory.New(nil); err == nil {
		t.Fatal("memory.New(nil) succeeded; a store without schemas could be written to unchecked")
	}
}
