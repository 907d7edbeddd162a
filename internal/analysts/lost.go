package analysts

import (
	"context"
	"errors"

	"github.com/brainhq/eventstream/internal/pglost"
)

// lost returns err as an *eventstore.UnavailableError when it says the
// database could not be reached or went away (a restart, a failover, a
// network failure) rather than refused the work: the caller may run the
// command again once it is back. Not when ctx
// ended (pgx may report that as a closed connection), nor a refusal.
func lost(ctx context.Context, err error) error {
	if errors.Is(err, ErrRefused) {
		return err
	}
	return pglost.Err(ctx, err)
}
