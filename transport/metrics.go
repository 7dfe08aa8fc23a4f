package transport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livestore-relay/livestore-relay/auth"
)

type metrics struct {
	handshakeDuration prometheus.Histogram
	authFailures      map[auth.Reason]prometheus.Counter
	rejections        *prometheus.CounterVec
	handshakesPending prometheus.Gauge
	handshakesShed    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "livestore_relay"
	m := &metrics{
		handshakeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "handshake_duration_seconds",
			Help:    "Time from accepting a connection to its WebSocket upgrade, token check included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14)}),
		authFailures: make(map[auth.Reason]prometheus.Counter),
		handshakesPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "handshakes_pending",
			Help: "Accepted connections that have not finished their handshake."}),
		handshakesShed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "handshakes_shed_total",
			Help: "Unfinished handshakes closed to make room for new connections (--max-handshakes, or out of file descriptors)."}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upgrade_rejections_total",
			Help: "Refused WebSocket upgrades by HTTP status (0: the client went away mid-handshake)."}, []string{"status"}),
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "auth_failures_total",
		Help: "Upgrades refused for their token, by reason."}, []string{"reason"})
	for _, r := range auth.AllReasons() {
		m.authFailures[r] = failures.WithLabelValues(string(r))
	}
	reg.MustRegister(m.handshakeDuration, failures, m.rejections, m.handshakesPending, m.handshakesShed)
	return m
}

func (m *metrics) authFailure(r auth.Reason) {
	if c := m.authFailures[r]; c != nil {
		c.Inc()
	}
}

func (m *metrics) handshakeRejected(status int) {
	m.rejections.WithLabelValues(strconv.Itoa(status)).Inc()
}
