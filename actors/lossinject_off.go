//go:build !relay_lossinject

package actors

// dropRelay reports whether to drop one relayed frame on purpose. It never
// does in a normal build; see lossinject_on.go.
func (r *room) dropRelay() bool { return false }
