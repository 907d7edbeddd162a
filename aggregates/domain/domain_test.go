package domain_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/schemas"
)

func TestRegistryCoversEveryDomainSchema(t *testing.T) {
	t.Parallel()
	reg, err := domain.NewRegistry(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, typ := range schemas.MustDefault().Types() {
		for _, p := range []string{"course.", "distribution.", "ir.", "mission."} {
			if strings.HasPrefix(typ, p) {
				want = append(want, typ)
			}
		}
	}
	if got := reg.Types(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("registered %v\nschemas    %v", got, want)
	}
}

// Commands end to end against PostgreSQL, with snapshots in PostgreSQL:
// the loaded state is the same from a snapshot and from events.
func TestDistributionWithSnapshotsInPostgres(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{SnapshotEvery: 5}, true)
	id := seedDistribution(t, env, 3)
	for range 12 {
		if _, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.RecordView{DistributionID: id, VisitorID: uuid.NewString()}); err != nil {
			t.Fatal(err)
		}
	}
	var version int64
	if err := env.Pool.QueryRow(ctx, `SELECT version FROM aggregate_snapshots WHERE stream = $1`, "distribution-"+id).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != 15 {
		t.Fatalf("snapshot at v%d, want v15", version)
	}
	a, err := env.Distributions.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Distributions.Repository().LoadFromEvents(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 15 || a.State.Views != 13 || b.State.Views != 13 || b.Version != 15 {
		t.Fatalf("snapshot load v%d %d views, replay v%d %d views; want v15 and 13", a.Version, a.State.Views, b.Version, b.State.Views)
	}
}
