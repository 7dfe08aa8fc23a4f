package actors

import "github.com/prometheus/client_golang/prometheus"

// rejectReason is why a sequenced push was rejected.
type rejectReason uint8

// Reasons of a rejection. rejectCount ends the list.
const (
	rejectMismatch rejectReason = iota
	rejectNotJoined
	rejectInvalid
	rejectInternal
	rejectCount
)

// String is the reason's metric label.
func (r rejectReason) String() string {
	switch r {
	case rejectMismatch:
		return "head_mismatch"
	case rejectNotJoined:
		return "not_joined"
	case rejectInvalid:
		return "invalid_message"
	case rejectInternal:
		return "internal_error"
	}
	return ""
}

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
	for r := range rejectCount {
		m.pushRejected[r] = pushes.WithLabelValues(r.String())
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
