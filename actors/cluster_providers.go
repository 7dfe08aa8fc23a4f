package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/cluster"
)

// newProvider makes the membership provider of a cluster that is not
// static.
func newProvider(cfg ClusterConfig) (cluster.ClusterProvider, error) {
	return nil, fmt.Errorf("cluster provider %q is not available", cfg.Provider)
}
