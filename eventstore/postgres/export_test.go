package postgres

import "time"

// SetGroupTimeout shortens how long s's committers wait for the database
// to answer a group (groupTimeout), so that a test need not wait a
// minute. Call it before the first Append.
func SetGroupTimeout(s *Store, d time.Duration) { s.groupTimeout = d }

// GroupsInFlight is how many groups the committers are writing now.
func GroupsInFlight(s *Store) int { return int(s.inFlight.Load()) }
