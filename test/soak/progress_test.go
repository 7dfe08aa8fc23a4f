package soak

import (
	"strings"
	"testing"
)

// A run whose relay died leaves no device connected, so nothing was checked
// for loss; the summary must not claim "of 0 expected".
func TestSummaryWithNoDeviceLeft(t *testing.T) {
	var b strings.Builder
	writeSummary(&b, &Result{Deliveries: 463200, Failures: []string{"relay exited"}})
	out := b.String()
	if strings.Contains(out, "of 0 expected") {
		t.Errorf("summary claims zero expected deliveries:\n%s", out)
	}
	if !strings.Contains(out, "none checked for loss") {
		t.Errorf("summary does not say that no delivery was checked:\n%s", out)
	}
}
