package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Every key the benchmark creates, its own and the engine's, starts with
// the run's prefix "eddybench:<8 random hex>:<run>:" or with "{" and that
// prefix (the engine's partition streams and its keys, which carry the
// stream name as a hash tag). Cleanup deletes both patterns, and nothing
// else, so a benchmark on a shared server leaves it as it found it.

// newPrefix returns "eddybench:<8 random hex>:", unique to one bench run.
// It holds no glob metacharacters, so it can go into SCAN MATCH as it is.
func newPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return "eddybench:" + hex.EncodeToString(b[:]) + ":"
}

// names are the keys of one scenario run, all under prefix.
type names struct {
	prefix string
}

// runNames returns the names of run n under the bench's prefix.
func runNames(prefix string, n int) names {
	return names{prefix: prefix + strconv.Itoa(n) + ":"}
}

// input is the input stream (Eddy's partitions are "{input:p}").
func (n names) input() string { return n.prefix + "in" }

// output is the output stream both sides append to.
func (n names) output() string { return n.prefix + "out" }

// windows is the stream of the windowed pipeline's results.
func (n names) windows() string { return n.prefix + "windows" }

// seen is the baseline's dedupe set.
func (n names) seen() string { return n.prefix + "seen" }

// Consumer groups of the two sides. Eddy's is the pipeline name.
const (
	eddyGroup     = "bench"
	baselineGroup = "baseline"
)

// Cleanup deletes every key that starts with prefix or with "{"+prefix:
// SCAN MATCH, then UNLINK, 500 at a time. prefix must hold no glob
// metacharacters (* ? [ ] \). It returns how many keys it deleted.
func Cleanup(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	deleted := 0
	for _, pattern := range []string{prefix + "*", "{" + prefix + "*"} {
		var cursor uint64
		for {
			keys, next, err := rdb.Scan(ctx, cursor, pattern, 500).Result()
			if err != nil {
				return deleted, fmt.Errorf("scan %s: %w", pattern, err)
			}
			if len(keys) > 0 {
				n, err := rdb.Unlink(ctx, keys...).Result()
				if err != nil {
					return deleted, fmt.Errorf("unlink %d keys of %s: %w", len(keys), pattern, err)
				}
				deleted += int(n)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return deleted, nil
}
