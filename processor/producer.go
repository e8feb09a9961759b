package processor

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Record is one event to produce: its key routes it to a partition.
type Record struct {
	Key    string
	Fields []string
}

// Producer appends records to the partition streams of a pipeline's input,
// routing each by PartitionOf(key). It does not close the client.
type Producer struct {
	rdb        redis.UniversalClient
	stream     string
	partitions int
	maxLen     int64
}

// NewProducer returns a producer for stream split into partitions (0 or 1:
// the stream itself). maxLen > 0 trims each partition with MAXLEN ~.
func NewProducer(rdb redis.UniversalClient, stream string, partitions int, maxLen int64) *Producer {
	return &Producer{rdb: rdb, stream: stream, partitions: max(partitions, 1), maxLen: maxLen}
}

// Send appends recs in one pipelined round trip and returns their ids.
// Records of one key keep their order.
func (p *Producer) Send(ctx context.Context, recs []Record) ([]string, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(recs))
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, r := range recs {
			cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: PartitionStream(p.stream, PartitionOf(r.Key, p.partitions), p.partitions),
				MaxLen: p.maxLen, Approx: p.maxLen > 0, Values: r.Fields,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("produce %d records to %s: %w", len(recs), p.stream, err)
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids, nil
}
