package processor

import "sort"

// assign spreads partitions over members, the same way on every worker
// given the same members: each member gets partitions/len(members) or one
// more, and each partition goes to the member that ranks it highest
// (rendezvous hashing) among those with room left. A member joining or
// leaving moves few partitions. It returns the owner of each partition, ""
// when there are no members.
func assign(members []string, partitions int) []string {
	owners := make([]string, partitions)
	if len(members) == 0 {
		return owners
	}
	ms := append([]string(nil), members...)
	sort.Strings(ms)
	base, extra := partitions/len(ms), partitions%len(ms)
	room := make(map[string]int, len(ms))
	for i, m := range ms {
		room[m] = base
		if i < extra {
			room[m]++
		}
	}
	ranked := make([]string, len(ms))
	for p := 0; p < partitions; p++ {
		copy(ranked, ms)
		sort.Slice(ranked, func(i, j int) bool {
			hi, hj := rendezvous(ranked[i], p), rendezvous(ranked[j], p)
			if hi != hj {
				return hi > hj
			}
			return ranked[i] < ranked[j]
		})
		for _, m := range ranked {
			if room[m] > 0 {
				owners[p] = m
				room[m]--
				break
			}
		}
	}
	return owners
}

// rendezvous is the weight of member for partition p.
func rendezvous(member string, p int) uint32 {
	h := fnv32a(member)
	h ^= uint32(p) * 0x9e3779b1
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
