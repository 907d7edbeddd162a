package server

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
