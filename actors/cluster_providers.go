package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/k8s"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdBaseKey is where the etcd provider registers members, under the
// cluster's name.
const etcdBaseKey = "/livestore-relay/members"

// newProvider makes the membership provider of a cluster that is not
// static: protoactor's etcd provider (members hold a lease kept alive
// every few seconds) or its Kubernetes provider (members are the pods
// labelled with the cluster's name, watched through the API server; the
// pod needs RBAC to get, list, watch and patch pods).
func newProvider(cfg ClusterConfig) (cluster.ClusterProvider, error) {
	switch cfg.Provider {
	case "etcd":
		p, err := etcd.NewWithConfig(etcdBaseKey, clientv3.Config{Endpoints: cfg.Etcd, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("etcd provider: %w", err)
		}
		return p, nil
	case "kubernetes":
		p, err := k8s.New()
		if err != nil {
			return nil, fmt.Errorf("kubernetes provider (it runs only inside a pod): %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("unknown cluster provider %q", cfg.Provider)
}
