package actors

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livestore-relay/livestore-relay/protocol"
)

// outKind is the kind of a frame written to a client: the label of the
// sent-message metrics.
type outKind uint8

// Outbound message kinds. outKindCount ends the list.
const (
	outPush outKind = iota
	outPeerPull
	outPeerPullResponse
	outAck
	outPullResponse
	outError
	outControl
	outKindCount
)

// outRemote is a frame delivered for a room on another node of a cluster,
// which counted it when it sent it: its counters are not registered.
const outRemote = outKindCount

// String is the kind's metric label. Relayed kinds share their names with
// protocol types.
func (k outKind) String() string {
	switch k {
	case outPush:
		return protocol.TypePush.String()
	case outPeerPull:
		return protocol.TypePeerPull.String()
	case outPeerPullResponse:
		return protocol.TypePeerPullResponse.String()
	case outAck:
		return "ack"
	case outPullResponse:
		return "pull_response"
	case outError:
		return "error"
	case outControl:
		return "control"
	}
	return ""
}

// Metrics are the relay's counters and gauges. Children of labelled vectors
// are resolved once here so the message path only does atomic adds.
type Metrics struct {
	Connections     prometheus.Gauge
	Rooms           prometheus.Gauge
	SlowConsumers   prometheus.Counter
	RelayLatency    prometheus.Histogram
	QueueDepth      prometheus.Histogram
	RoomMailbox     prometheus.Gauge
	DirMailbox      prometheus.Gauge
	SendQueue       prometheus.Gauge
	in              [protocol.NumTypes]prometheus.Counter
	inBytes         [protocol.NumTypes]prometheus.Counter
	out             [outKindCount + 1]prometheus.Counter
	outBytes        [outKindCount + 1]prometheus.Counter
	errors          [protocol.NumCodes]prometheus.Counter
	store           storeMetrics
	closes          [closeReasonCount]prometheus.Counter
	closesByCode    *prometheus.CounterVec
	drops           *prometheus.CounterVec
	droppedRate     prometheus.Counter
	droppedMismatch prometheus.Counter
	droppedInvalid  prometheus.Counter
	droppedUnknown  prometheus.Counter
	reg             prometheus.Registerer // for the cluster's metrics, registered only in cluster mode
}

// depthGauge keeps a gauge at the number of messages waiting in the
// mailboxes it is attached to.
type depthGauge struct{ g prometheus.Gauge }

func (d depthGauge) MailboxStarted()     {}
func (d depthGauge) MessagePosted(any)   { d.g.Inc() }
func (d depthGauge) MessageReceived(any) { d.g.Dec() }
func (d depthGauge) MailboxEmpty()       {}

// NewMetrics creates the relay metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "livestore_relay"
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections",
			Help: "Open WebSocket connections, bound or not."}),
		Rooms: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "rooms",
			Help: "Users with at least one open connection."}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "slow_consumer_disconnects_total",
			Help: "Connections closed with 4003 because their send queue passed its bound."}),
		RelayLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "relay_latency_seconds",
			Help:    "Time from a push frame read to its frames queued for every recipient.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3}}),
		QueueDepth: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "send_queue_depth_messages",
			Help:    "Messages waiting in a connection's send queue, sampled at each write.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}}),
		RoomMailbox: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "room_mailbox_depth_messages",
			Help: "Messages waiting in all room actors' mailboxes."}),
		DirMailbox: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "directory_mailbox_depth_messages",
			Help: "Messages waiting for the room directory actor."}),
		SendQueue: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "send_queue_messages",
			Help: "Messages queued for all connections and not yet handed to their sockets."}),
		closesByCode: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "closes_total",
			Help: "Closed connections by close code and reason."}, []string{"code", "reason"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dropped_messages_total",
			Help: "Client messages neither relayed nor answered normally, by reason."}, []string{"reason"}),
	}
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_received_total",
		Help: "Client messages received, by type (unknown for anything unparseable or unsupported)."}, []string{"type"})
	inBytes := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "received_bytes_total",
		Help: "Bytes of client message payloads received, by type."}, []string{"type"})
	for t := protocol.TypeUnknown; t < protocol.NumTypes; t++ {
		m.in[t] = in.WithLabelValues(t.String())
		m.inBytes[t] = inBytes.WithLabelValues(t.String())
	}
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_sent_total",
		Help: "Frames written to clients, by type (control: ping and pong)."}, []string{"type"})
	outBytes := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sent_bytes_total",
		Help: "Bytes of frames written to clients, by type."}, []string{"type"})
	for k := range outKindCount {
		m.out[k] = out.WithLabelValues(k.String())
		m.outBytes[k] = outBytes.WithLabelValues(k.String())
	}
	m.out[outRemote] = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
	m.outBytes[outRemote] = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
	m.reg = reg
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "errors_total",
		Help: "Error messages sent to clients, by code."}, []string{"code"})
	for _, c := range protocol.AllCodes() {
		m.errors[c] = errs.WithLabelValues(c.String())
	}
	// ClosePeer is labelled with the peer's own code when it happens.
	for r := ClosePeer + 1; r < closeReasonCount; r++ {
		m.closes[r] = m.closesByCode.WithLabelValues(strconv.Itoa(int(r.Code())), r.String())
	}
	m.droppedRate = m.drops.WithLabelValues("rate_limited")
	m.droppedMismatch = m.drops.WithLabelValues("client_mismatch")
	m.droppedInvalid = m.drops.WithLabelValues("invalid")
	m.droppedUnknown = m.drops.WithLabelValues("unknown_request")
	m.store.register(reg, ns)
	reg.MustRegister(m.Connections, m.Rooms, m.SlowConsumers, m.RelayLatency, m.QueueDepth, m.RoomMailbox, m.DirMailbox,
		m.SendQueue, in, inBytes, out, outBytes, errs, m.closesByCode, m.drops)
	return m
}

func (m *Metrics) closed(r CloseReason, peerCode uint16) {
	if r == ClosePeer {
		m.closesByCode.WithLabelValues(strconv.Itoa(int(peerCode)), r.String()).Inc()
		return
	}
	if r < closeReasonCount && m.closes[r] != nil {
		m.closes[r].Inc()
	}
}
