package actors

import "github.com/prometheus/client_golang/prometheus"

// Why a sequenced push was rejected, as metric labels.
const (
	rejectMismatch = iota
	rejectNotJoined
	rejectInvalid
	rejectInternal
	rejectCount
)

var rejectReasons = [rejectCount]string{"head_mismatch", "not_joined", "invalid_message", "internal_error"}

// storeMetrics count the sequenced stores' traffic.
type storeMetrics struct {
	pushAccepted prometheus.Counter
	pushRejected [rejectCount]prometheus.Counter
	adopted      prometheus.Counter
	conflicts    prometheus.Counter
	writeSeconds prometheus.Histogram
}

func (m *storeMetrics) register(reg prometheus.Registerer, ns string) {
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_pushes_total",
		Help: "Pushes to sequenced stores, by result: accepted, or the reason of the rejection."}, []string{"result"})
	m.pushAccepted = pushes.WithLabelValues("accepted")
	for i, r := range rejectReasons {
		m.pushRejected[i] = pushes.WithLabelValues(r)
	}
	m.adopted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_heads_adopted_total",
		Help: "Joins whose announced head was ahead of the relay's, which adopted it."})
	m.conflicts = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "store_conflicts_total",
		Help: "Joins refused with store_conflict: another event at the relay's head number."})
	m.writeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "state_write_seconds",
		Help:    "Time to commit one batch of store heads to the state directory.",
		Buckets: []float64{100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}})
	reg.MustRegister(pushes, m.adopted, m.conflicts, m.writeSeconds)
}
