package actors

import (
	"fmt"
	"testing"
)

// Rendezvous placement spreads users evenly over the members, and a member
// that joins takes only the users it now owns: every other user stays where
// it was.
func TestRendezvousSpreadsEvenlyAndAJoinMovesOnlyTheNewMembersUsers(t *testing.T) {
	const users = 30000
	members := []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}
	joined := append(append([]string{}, members...), "10.0.0.4:7000")
	count := map[string]int{}
	moved := 0
	for i := range users {
		u := fmt.Sprintf("user-%d", i)
		before, after := rendezvous(members, u), rendezvous(joined, u)
		count[before]++
		if before != after {
			if after != joined[3] {
				t.Fatalf("%s moved from %s to %s, not to the new member", u, before, after)
			}
			moved++
		}
	}
	for _, m := range members {
		if share := float64(count[m]) / users; share < 0.31 || share > 0.36 {
			t.Errorf("%s owns %.1f%% of users, want about a third", m, 100*share)
		}
	}
	if share := float64(moved) / users; share < 0.23 || share > 0.27 {
		t.Errorf("a fourth member took %.1f%% of users, want about a quarter", 100*share)
	}
	t.Logf("3 members: %v; a fourth took %d of %d users (%.1f%%)", count, moved, users, 100*float64(moved)/users)
}
