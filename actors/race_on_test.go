//go:build race

package actors

// raceEnabled: the race detector allocates on synchronisation, so
// allocation counts are not checked under it.
const raceEnabled = true
