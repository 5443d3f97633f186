package exporter

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the exporter, registered on an explicit registry.
type Metrics struct {
	streams            prometheus.Gauge
	batchesSent        *prometheus.CounterVec
	entriesApplied     *prometheus.CounterVec
	retriesFailed      *prometheus.CounterVec
	errors             *prometheus.CounterVec
	bytesRead          prometheus.Counter
	lagSeconds         *prometheus.GaugeVec
	entriesBehind      *prometheus.GaugeVec
	shardsBehind       *prometheus.GaugeVec
	shardsStalled      *prometheus.GaugeVec
	shardLag           *prometheus.GaugeVec
	shardBehind        *prometheus.GaugeVec
	objectBytesRead    prometheus.Counter
	objectBytesSkipped *prometheus.CounterVec
	objectsApplied     *prometheus.CounterVec
	objectBytesApplied *prometheus.CounterVec
	trims              *prometheus.CounterVec
	resyncs            *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "streams", Help: "Replicate streams open (one per connected applier)."}),
		batchesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "batches_sent_total", Help: "Batches sent to appliers."}, []string{"destination", "log"}),
		entriesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "entries_applied_total", Help: "Entries acked as applied by appliers."}, []string{"destination", "log"}),
		retriesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "items_failed_total", Help: "Items that failed (at the source or the destination) and were kept for retry."}, []string{"destination", "log"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "errors_total", Help: "Errors by kind."}, []string{"kind"}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "metadata_bytes_read_total", Help: "Metadata blob bytes read from the source."}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "lag_seconds", Help: "Age of the oldest unapplied change, per destination and log (0 when caught up)."}, []string{"destination", "log"}),
		entriesBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "entries_behind", Help: "Log entries read but not yet acked, per destination and log."}, []string{"destination", "log"}),
		shardsBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "shards_behind", Help: "Shards with changes or retries pending."}, []string{"destination"}),
		shardsStalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "shards_stalled", Help: "Shards with work pending and no batch sent nor ack taken for sync.stall_after."}, []string{"destination"}),
		shardLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "shard_lag_seconds", Help: "Age of the oldest unapplied change of one shard (0 when caught up)."}, []string{"destination", "log", "shard"}),
		shardBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "shard_entries_behind", Help: "Log entries of one shard read but not yet acked."}, []string{"destination", "log", "shard"}),
		objectBytesRead: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "object_bytes_read_total", Help: "Object body bytes read from the source."}),
		objectBytesSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "object_bytes_not_sent_total", Help: "Bytes of large objects not read nor sent because the applier found them on the destination already."}, []string{"destination"}),
		objectsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "objects_applied_total", Help: "Object operations acked as applied."}, []string{"destination"}),
		objectBytesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "object_bytes_applied_total", Help: "Object bytes of operations acked as applied (failed ones included)."}, []string{"destination"}),
		trims: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "log_trims_total", Help: "Trims of a source log shard (log: metadata or data)."}, []string{"log"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "rgwsync", Subsystem: "exporter",
			Name: "resyncs_total", Help: "Full re-syncs started because the source log was trimmed past a bound."}, []string{"destination"}),
	}
	if reg != nil {
		reg.MustRegister(m.streams, m.batchesSent, m.entriesApplied, m.retriesFailed, m.errors, m.bytesRead,
			m.lagSeconds, m.entriesBehind, m.shardsBehind, m.shardsStalled, m.shardLag, m.shardBehind, m.objectBytesRead, m.objectBytesSkipped, m.objectsApplied, m.objectBytesApplied, m.trims, m.resyncs)
	}
	return m
}
