package simulate

import (
	"strings"
	"testing"
)

func TestTopicFill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		template, event, want string
	}{
		{"sensors/{device_id}/{sensor}", `{"device_id":"dev-7","sensor":"humidity","value":1}`, "sensors/dev-7/humidity"},
		{"sensors/{device_id}/{sensor}", `{"sensor":"humidity"}`, "sensors/unknown/humidity"},
		{"sensors/{device_id}/{sensor}", `{"device_id":"dev-7","sen`, "sensors/dev-7/unknown"},
		{"sensors/{device_id}/{sensor}", "#\x00garbage", "sensors/unknown/unknown"},
		{"clicks/{user_id}", `{"user_id":"a/b+c#d\u0001e"}`, "clicks/a_b_c_d_e"},
		{"n/{n}/{ok}/{x}", `{"n":42.5,"ok":true,"x":null}`, "n/42.5/true/unknown"},
		{"n/{o}/{a}/{e}", `{"o":{"p":1},"a":[1],"e":""}`, "n/unknown/unknown/unknown"},
		{"dev-{device_id}-x/fixed", `{"device_id":"9"}`, "dev-9-x/fixed"},
		{"fixed/topic", `{"device_id":"9"}`, "fixed/topic"},
		{"a/{nested}", `{"nested":"x","inner":{"nested":"y"}}`, "a/x"},
	}
	for _, tt := range tests {
		tp, err := ParseTopic(tt.template)
		if err != nil {
			t.Fatalf("ParseTopic(%q) = %v", tt.template, err)
		}
		if got := tp.Fill([]byte(tt.event)); got != tt.want {
			t.Errorf("ParseTopic(%q).Fill(%s) = %q, want %q", tt.template, tt.event, got, tt.want)
		}
		if tp.String() != tt.template {
			t.Errorf("String() = %q, want %q", tp.String(), tt.template)
		}
	}
}

func TestParseTopicErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ template, want string }{
		{"", "empty"},
		{"sensors/+/x", "wildcards"},
		{"sensors/#", "wildcards"},
		{"a//b", "level 2 is empty"},
		{"/a", "level 1 is empty"},
		{"a/{device", "{ without }"},
		{"a/device}", "} without {"},
		{"a/{}", "placeholder {}"},
		{"a/{dev ice}", "placeholder {dev ice}"},
		{"a/{x.y}", "placeholder {x.y}"},
		{"a\x00b", "NUL"},
	}
	for _, tt := range tests {
		_, err := ParseTopic(tt.template)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseTopic(%q) = %v, want an error saying %q", tt.template, err, tt.want)
		}
	}
}
