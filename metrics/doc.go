// Package metrics owns every Prometheus collector of Eddy: their names,
// help texts, labels and buckets, and the registration of all of them on a
// registry that the caller passes in.
//
// *Metrics implements processor.Observer, so the engine reports commits,
// retries and handler timings to it without knowing Prometheus. The sampled
// gauges (lag, pending entries, age of the oldest pending entry, members
// alive, Redis reachable) are set by whoever samples them, through
// SetPartitionStats, SetMembers and SetRedis; producers and simulators
// count what they add with Produced. Prepare creates a pipeline's series
// at 0 (every partition, dead-letter reason and analytics step result) so
// that rate() and alerts work before the first event.
//
// It does not own the registry, the HTTP endpoint that serves it, or the
// sampling loop: cmd/eddy creates the registry, serves /metrics and wires
// Metrics into the engine. There is no global registry and no init().
//
// Import direction: cmd/eddy -> metrics -> processor.
//
// Names follow eddy_<subsystem>_<name>_<unit>; counters end in _total.
// Series are labelled by pipeline, by partition where a single partition can
// lag or skew on its own, and dead letters by reason:
//
//	eddy_processor_processed_total{pipeline,partition}
//	eddy_processor_duplicates_total{pipeline,partition}
//	eddy_processor_stale_total{pipeline,partition}
//	eddy_processor_retries_total{pipeline,partition}
//	eddy_processor_commits_total{pipeline,partition}
//	eddy_processor_dead_letters_total{pipeline,reason}
//	eddy_processor_commit_duration_seconds{pipeline}       histogram
//	eddy_processor_handle_duration_seconds{pipeline}       histogram
//	eddy_processor_end_to_end_latency_seconds{pipeline}    histogram
//	eddy_processor_lag_entries{pipeline,partition}          gauge
//	eddy_processor_pending_entries{pipeline,partition}      gauge
//	eddy_processor_oldest_pending_age_seconds{pipeline,partition} gauge
//	eddy_processor_partition_owned{pipeline,partition}       gauge, 1 while this worker holds the lease
//	eddy_processor_lease_acquisitions_total{pipeline,partition}
//	eddy_processor_leases_lost_total{pipeline,partition}
//	eddy_processor_rebalances_total{pipeline}              partitions this worker took or gave up
//	eddy_processor_members_alive{pipeline}                 gauge, live workers of the group, sampled
//	eddy_processor_timers_fired_total{pipeline,partition}
//	eddy_processor_timer_lateness_seconds{pipeline}        histogram
//	eddy_processor_wrong_partition_total{pipeline,partition}
//	eddy_step_results_total{pipeline,step,kind}
//	eddy_step_late_events_total{pipeline,step}
//	eddy_step_forgotten_total{pipeline,step}                keys an absence step forgot (forget_after)
//	eddy_step_open{pipeline,partition,step}                 gauge, sampled
//	eddy_retention_trimmed_total{stream}                   entries trimmed under retention
//	eddy_retention_length{stream}                          gauge, after the last trim
//	eddy_retention_oldest_age_seconds{stream}              gauge, after the last trim
//	eddy_retention_held_back_entries{stream,group}         gauge, past the policy but not acked by group
//	eddy_retention_abandoned{stream,group}                 gauge, 1 while the holding group is abandoned
//	eddy_redis_up                                          gauge, 1 if the last sample read Redis
//	eddy_redis_probe_seconds                               gauge, how long the last sample's probe took
//	eddy_ingest_produced_total{pipeline}
//	eddy_ingest_accepted_total{source,pipeline}              events a source appended
//	eddy_ingest_rejected_total{source,pipeline,reason}       refused (HTTP) or forwarded to be dead-lettered (MQTT)
//	eddy_ingest_requests_total{source,pipeline,status}       HTTP requests by status, MQTT messages by outcome
//	eddy_ingest_received_bytes_total{source,pipeline}        as sent, before decompression
//	eddy_ingest_request_duration_seconds{source,pipeline}    histogram, arrival to answer
//	eddy_ingest_publish_duration_seconds{source,pipeline}    histogram, one append to Redis
//	eddy_ingest_in_flight_requests{source,pipeline}          gauge
//	eddy_build_info{version}                                gauge, always 1
package metrics
