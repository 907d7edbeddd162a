package server

import "time"

// WaitForRead waits until the read of the tokens in flight, if any, has
// ended and its outcome is recorded: how a test sees the end of a read that
// no request waited for.
func (a *Authenticator) WaitForRead() {
	a.mu.Lock()
	r := a.reading
	a.mu.Unlock()
	if r != nil {
		<-r.done
	}
}

// Bounds of a tenant's lag, which tests check.
const (
	TenantLagWindow = tenantLagWindow
	TenantLagPages  = tenantLagPages
)

// SessionCount is how many sessions, live or expired, a server without a
// database keeps in the process (-1 for a server with one).
func SessionCount(s *Server) int {
	m, ok := s.ui.sessions.(*memSessions)
	if !ok {
		return -1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}

// SetSessionClock makes now the clock of the sessions a server without a
// database keeps in the process. Call it before Start.
func SetSessionClock(s *Server, now func() time.Time) {
	s.ui.sessions.(*memSessions).now = now
}
