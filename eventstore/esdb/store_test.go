package esdb_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/storetest"
	"github.com/brainhq/eventstream/schemas"
)

// features is what the esdb backend declares; the suite checks that the
// store says the same.
var features = eventstore.Features{GaplessPositions: false, TenantFilter: false, Persistent: true, PerStreamIDs: true}

// conformanceAppendSize is the append limit the conformance runs use on
// both sides: the suite appends MaxBatchEvents events in one call, more
// than EventStoreDB's default 1 MiB. docs/eventstoredb.md tells users to
// raise the server's MaxAppendSize the same way.
const conformanceAppendSize = 16 << 20

// standInStore starts a protocol stand-in (NOT EventStoreDB) for one store.
func standInStore(t *testing.T, reg *schemas.Registry, serverOpts []esdbtest.Option, opts ...esdb.Option) (*esdb.Store, *esdbtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := esdbtest.Start(context.Background(), serverOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	st, err := esdb.New(ctx, srv.URL(), reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, srv
}

// TestConformance_ProtocolStandIn runs the store conformance suite against
// the in-process EventStoreDB protocol stand-in (package esdbtest): the real
// client over a real gRPC connection, but NOT a real EventStoreDB server.
func TestConformance_ProtocolStandIn(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			st, _ := standInStore(t, reg,
				[]esdbtest.Option{esdbtest.MaxAppendSize(conformanceAppendSize)},
				esdb.WithMaxAppendSize(conformanceAppendSize))
			return st
		},
		Features: features,
	})
}

// TestConformance_EventStoreDB runs the suite against the real server named
// by EVENTSTORE_URL (an esdb:// connection string). Each store gets its own
// namespace on that server. Set EVENTSTORE_MAX_APPEND_SIZE to the server's
// MaxAppendSize (default 1 MiB, which the MaxBatchEvents case exceeds: run
// with -short to skip it on a default server).
func TestConformance_EventStoreDB(t *testing.T) {
	url := os.Getenv("EVENTSTORE_URL")
	if url == "" {
		t.Skip("EVENTSTORE_URL is not set: skipping the conformance suite against a real EventStoreDB server (the protocol stand-in run, TestConformance_ProtocolStandIn, does not need one)")
	}
	maxAppend := esdb.DefaultMaxAppendSize
	if v := os.Getenv("EVENTSTORE_MAX_APPEND_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("EVENTSTORE_MAX_APPEND_SIZE=%q: want a byte count", v)
		}
		maxAppend = n
	}
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := esdb.New(ctx, url, reg, esdb.WithNamespace("storetest-"+uuid.NewString()+"-"), esdb.WithMaxAppendSize(maxAppend))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		Features: features,
	})
}

// TestStandIn_ReadAllScanLimit: a page looks at no more than ScanLimit
// events of the log, as on the other backends. The backend used to ignore
// ScanLimit and look at up to 65,536 events per page.
func TestStandIn_ReadAllScanLimit(t *testing.T) {
	t.Parallel()
	storetest.RunScanLimit(t, storetest.Harness{
		New: func(t *testing.T, reg *schemas.Registry) eventstore.Store {
			st, _ := standInStore(t, reg, nil)
			return st
		},
		Features: features,
	})
}
