package applier

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the applier, registered on an explicit registry.
type Metrics struct {
	applied       *prometheus.CounterVec
	bytes         prometheus.Counter
	errors        *prometheus.CounterVec
	reconnects    prometheus.Counter
	leaseChanges  *prometheus.CounterVec
	leaseMoves    *prometheus.CounterVec
	leasesHeld    prometheus.Gauge
	batchSeconds  prometheus.Histogram
	objects       *prometheus.CounterVec
	objectSeconds prometheus.Histogram
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "entries_applied_total", Help: "Metadata entries written to the destination, by section and result (put, skipped, delete)."},
			[]string{"section", "result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "bytes_applied_total", Help: "Payload bytes written to the destination."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "errors_total", Help: "Errors by kind."}, []string{"kind"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "stream_reconnects_total", Help: "Replicate streams that ended and were dialled again."}),
		leaseChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "lease_changes_total", Help: "Leases acquired (held=true) and lost (held=false)."}, []string{"held"}),
		leaseMoves: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "lease_moves_total", Help: "Shard leases given up or lost while running (not at shutdown), by reason: rebalanced (another member owns it now), taken (locked by another applier), expired (not renewed in time), revoked (by the exporter)."},
			[]string{"reason"}),
		leasesHeld: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "leases_held", Help: "Shard leases held now."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "batch_apply_seconds", Help: "Time to apply one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "objects_applied_total", Help: "Object operations applied to the destination, by result (put, skipped, acl, tags, delete, delete_version, delete_marker; suspension: a null version written in a suspension of its bucket on the destination, counted beside its put)."}, []string{"result"}),
		objectSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "rgwsync", Subsystem: "applier",
			Name: "object_apply_seconds", Help: "Time to apply one object operation.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.bytes, m.errors, m.reconnects, m.leaseChanges, m.leaseMoves, m.leasesHeld, m.batchSeconds, m.objects, m.objectSeconds)
	}
	return m
}
