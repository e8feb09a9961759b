package main

import (
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/internal/redisurl"
)

// The command line eddy bench writes into its report has no password.
func TestBenchReportCommandRedacted(t *testing.T) {
	for _, argv := range [][]string{
		{"eddy", "--redis", "redis://eddy:s3cr3t-pw@127.0.0.1:6379/0", "bench"},
		{"eddy", "--redis=rediss://eddy:s3cr3t-pw@host:6380", "bench", "--quick"},
	} {
		if got := redisurl.RedactText(commandLine(argv)); strings.Contains(got, "s3cr3t-pw") {
			t.Errorf("report command %q holds the password", got)
		}
	}
}
