package processor

import "strconv"

// Key layout. Everything one commit touches for a partition shares the hash
// tag returned by partitionTag, so the layout runs unchanged on Redis Cluster:
//
//	partitions = 1:  stream "S",      other keys "{S}:eddy:…"
//	partitions = n:  stream "{S:p}",  other keys "{S:p}:eddy:…"
//
// With one partition the stream keeps its plain name, so any client can XADD
// to it; "{S}" hashes to the same slot as "S".

// PartitionOf returns the partition of key among n: FNV-1a (32-bit) of the
// key's UTF-8 bytes, modulo n. Producers in any language route with it; the
// README lists test vectors.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(fnv32a(key) % uint32(n))
}

// fnv32a is FNV-1a, 32-bit, without the allocations of hash/fnv.
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// PartitionStream returns the name of partition p of stream among n.
func PartitionStream(stream string, p, n int) string {
	if n <= 1 {
		return stream
	}
	return "{" + partitionTag(stream, p, n) + "}"
}

// partitionTag is the hash-tag content shared by every key of a partition.
func partitionTag(stream string, p, n int) string {
	if n <= 1 {
		return stream
	}
	return stream + ":" + strconv.Itoa(p)
}

// partitionKey returns an engine-owned key of the partition: "{tag}:eddy:<parts…>".
func partitionKey(stream string, p, n int, parts ...string) string {
	k := "{" + partitionTag(stream, p, n) + "}:eddy"
	for _, s := range parts {
		k += ":" + s
	}
	return k
}

// DedupePrefix is the prefix of the dedupe sets of group on a partition.
func DedupePrefix(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "dedupe", group)
}

// leaseKey holds the fence of the partition's owner in group.
func leaseKey(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "lease", group)
}

// tokenKey counts the partition's owners in group: the fencing token.
func tokenKey(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "token", group)
}

// membersKey lists the live workers of group on stream (a sorted set
// scored by when each one's membership expires, unix ms).
func membersKey(stream, group string) string {
	return partitionKey(stream, 0, 1, "members", group)
}

// laneOf spreads keys over lanes with a hash independent of the partition
// hash (a murmur3 finaliser on it), so every lane gets work even when the
// partition count and lane count share factors.
func laneOf(key string, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := fnv32a(key)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return int(h % uint32(lanes))
}

// keyspace locates a partition's engine keys.
type keyspace struct {
	stream string
	p, n   int
	group  string
}

// StateKey is the hash holding state name of key on partition p of stream
// (of n) for group: "{tag}:eddy:state:<group>:<name>:<key>". It carries the
// partition's hash tag, so on Redis Cluster it is written inside the
// commit's atomic script.
func StateKey(stream string, p, n int, group, name, key string) string {
	return partitionKey(stream, p, n, "state", group, name) + ":" + key
}

// DistinctKey is the HyperLogLog name of key (Message.AddDistinct), like
// StateKey.
func DistinctKey(stream string, p, n int, group, name, key string) string {
	return partitionKey(stream, p, n, "hll", group, name) + ":" + key
}

// GaugesKey is the hash of partition p's gauges (Message.GaugeAdd): field
// name → level, in the partition's slot.
func GaugesKey(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "gauges", group)
}

// metaKey is a partition's engine metadata hash (its watermark).
func metaKey(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "meta", group)
}

// VersionKey is the string key that names the version of a pipeline's
// read model that readers read and workers write (`eddy rebuild` sets
// it); missing means version 1. Readers read it, then the hashes under
// VersionPrefix of it.
func VersionKey(pipeline string) string { return "eddy:version:" + pipeline }

// RebuildKey records the version a rebuild of pipeline is building, so
// that a rebuild that stopped resumes the same one.
func RebuildKey(pipeline string) string { return "eddy:rebuild:" + pipeline }

// VersionPrefix is what the read-model hashes of version n are prefixed
// with: "" for version 1 (the hashes as configured), "v<n>:" after.
func VersionPrefix(n int) string {
	if n <= 1 {
		return ""
	}
	return "v" + strconv.Itoa(n) + ":"
}

// VersionGroup is the consumer group of version n of a pipeline whose
// group is group: group itself for version 1, "<group>:v<n>" after. Every
// key the engine keeps per group (leases, dedupe, keyed state, timers)
// follows it, so a version starts from nothing.
func VersionGroup(group string, n int) string {
	if n <= 1 {
		return group
	}
	return group + ":v" + strconv.Itoa(n)
}

// lastCommitKey keeps the token and reply of the partition's last commit
// (commitScript ARGV[6]), so that a commit tried again after its reply was
// lost is answered what it did, not done again.
func lastCommitKey(stream string, p, n int, group string) string {
	return partitionKey(stream, p, n, "commit", group)
}
