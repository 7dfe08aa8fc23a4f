//go:build relay_lossinject

package actors

// dropRelay drops one relayed push in a thousand while still acking it.
// Built only with -tags relay_lossinject, to prove that the soak tool's
// checker catches loss; the shipped binary never contains it.
func (r *room) dropRelay() bool { return r.relayed%1000 == 0 }
