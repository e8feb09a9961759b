package processor

import "context"

// inspector is a read-only view of p's pipeline, with p's options.
func (p *Processor) inspector() *Inspector { return newInspector(p.rdb, p.o) }

// Stats reads each partition's length, lag and pending entries, in one
// round trip, as Inspector.Stats does.
func (p *Processor) Stats(ctx context.Context) ([]PartitionStats, error) {
	return p.inspector().Stats(ctx)
}

// Gauges reads each partition's gauges (Message.GaugeAdd), as
// Inspector.Gauges does.
func (p *Processor) Gauges(ctx context.Context) ([]map[string]int64, error) {
	return p.inspector().Gauges(ctx)
}

// Members lists the live workers of the pipeline's group (ordering key),
// as Inspector.Members does.
func (p *Processor) Members(ctx context.Context) ([]Member, error) {
	return p.inspector().Members(ctx)
}
