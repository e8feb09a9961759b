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
		{"{user1000}.following", keySlot("user1000")},
		{"foo{}{bar}", keySlot("foo{}{bar}")}, // an empty tag hashes the whole key
		{"{clicks:3}", keySlot("clicks:3")},
		{"{clicks:3}:eddy:lease:g", keySlot("clicks:3")},
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
