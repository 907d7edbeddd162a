package cli

import "context"

// migrateProjections applies the projection runtime's and read models'
// migrations. It is filled in as the projections package lands.
func (a *app) migrateProjections(ctx context.Context, db *database) ([]migrationResult, error) {
	return nil, nil
}
