// Package domain wires the four domain modules together: one registry with
// all their event types, checked against schemas/, and their services over
// one store.
package domain

import (
	"log/slog"
	"time"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// NewRegistry registers the event types of the four modules and checks
// them against s: every "course.", "distribution.", "ir." and "mission."
// schema must have a Go type, and every Go type a schema.
func NewRegistry(s *schemas.Registry) (*aggregates.Registry, error) {
	reg := aggregates.NewRegistry(s)
	coursefactory.Register(reg)
	distribution.Register(reg)
	governance.Register(reg)
	missions.Register(reg)
	if err := reg.Check(); err != nil {
		return nil, err
	}
	return reg, nil
}

// Options configure the services.
type Options struct {
	// Snapshots, when set, is the snapshot store and frequency for the
	// course, distribution and mission aggregates (each uses its own
	// snapshot schema version).
	Snapshots aggregates.SnapshotStore
	// SnapshotEvery is how often a snapshot is taken (default 100).
	SnapshotEvery int64
	// Now is governance's clock (nil: time.Now).
	Now    func() time.Time
	Retry  aggregates.Retry
	Logger *slog.Logger
}

// Services are the four modules' command handlers over one store.
type Services struct {
	Registry      *aggregates.Registry
	Courses       *coursefactory.Service
	Distributions *distribution.Service
	Governance    *governance.Service
	Missions      *missions.Service
}

// New builds the four services over store, with reg from NewRegistry.
func New(store eventstore.Store, reg *aggregates.Registry, opts Options) (*Services, error) {
	// Each module's Definition fills in its own snapshot schema version.
	policy := func() *aggregates.SnapshotPolicy {
		if opts.Snapshots == nil {
			return nil
		}
		every := opts.SnapshotEvery
		if every <= 0 {
			every = 100
		}
		return &aggregates.SnapshotPolicy{Store: opts.Snapshots, Every: every}
	}
	s := &Services{Registry: reg}
	var err error
	if s.Courses, err = coursefactory.New(store, reg, coursefactory.Options{Snapshots: policy(), Retry: opts.Retry, Logger: opts.Logger}); err != nil {
		return nil, err
	}
	if s.Distributions, err = distribution.New(store, reg, distribution.Options{Snapshots: policy(), Retry: opts.Retry, Logger: opts.Logger}); err != nil {
		return nil, err
	}
	if s.Governance, err = governance.New(store, reg, governance.Options{Now: opts.Now, Retry: opts.Retry, Logger: opts.Logger}); err != nil {
		return nil, err
	}
	if s.Missions, err = missions.New(store, reg, s.Governance, missions.Options{Snapshots: policy(), Retry: opts.Retry, Logger: opts.Logger}); err != nil {
		return nil, err
	}
	return s, nil
}
