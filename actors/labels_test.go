package actors

import "testing"

// The enumerations below each end with a count and name their values in a
// String method; a value added without a name, or two with one name, would
// merge or lose metric series.

func TestOutKindLabels(t *testing.T) {
	seen := map[string]outKind{}
	for k := range outKindCount {
		l := k.String()
		if l == "" {
			t.Errorf("outKind %d has no label", k)
		}
		if o, dup := seen[l]; dup {
			t.Errorf("outKinds %d and %d share the label %q", o, k, l)
		}
		seen[l] = k
	}
}

func TestRejectReasonLabels(t *testing.T) {
	seen := map[string]rejectReason{}
	for r := range rejectCount {
		l := r.String()
		if l == "" {
			t.Errorf("rejectReason %d has no label", r)
		}
		if o, dup := seen[l]; dup {
			t.Errorf("rejectReasons %d and %d share the label %q", o, r, l)
		}
		seen[l] = r
	}
}

func TestCloseReasons(t *testing.T) {
	labels := map[string]CloseReason{}
	codes := map[uint16]CloseReason{}
	for r := ClosePeer; r < closeReasonCount; r++ {
		l := r.String()
		if l == closeNone.String() {
			t.Errorf("CloseReason %d has no label", r)
		}
		if o, dup := labels[l]; dup {
			t.Errorf("CloseReasons %d and %d share the label %q", o, r, l)
		}
		labels[l] = r
		if r == ClosePeer {
			continue // echoes the peer's code and text
		}
		if r.Text() == "" || len(r.Text()) > 123 {
			t.Errorf("%v: close text %q is empty or too long for a control frame", r, r.Text())
		}
		if o, dup := codes[r.Code()]; dup {
			t.Errorf("CloseReasons %v and %v share the code %d", o, r, r.Code())
		}
		codes[r.Code()] = r
	}
}
