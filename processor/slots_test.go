package processor

import "testing"

// Vectors from the Redis Cluster specification and CLUSTER KEYSLOT.
func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 12739}, // the spec's CRC16 check value 0x31C3 → 12739
		{"foo", 12182},
		// The spec's hash tag examples: what is hashed is the part named.
		{"{user1000}.following", int(crc16("user1000") % 16384)},
		{"foo{}{bar}", int(crc16("foo{}{bar}") % 16384)}, // an empty tag hashes the whole key
		{"foo{{bar}}zap", int(crc16("{bar") % 16384)},
		{"foo{bar}{zap}", int(crc16("bar") % 16384)},
		{"{clicks:3}:eddy:lease:g", int(crc16("clicks:3") % 16384)},
	}
	for _, tt := range tests {
		if got := keySlot(tt.key); got != tt.want {
			t.Errorf("keySlot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if crc16("123456789") != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", crc16("123456789"))
	}
}
