package resync

import (
	"fmt"
	"testing"
	"time"
)

func members(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m-%04d", from+i)
	}
	return out
}

func TestFillParts(t *testing.T) {
	plan := newPlan("1400000000", "@TOA#_a", time.UnixMilli(1_700_000_000_000), 1200) // 3 parts
	if plan.Parts != 3 {
		t.Fatalf("%d parts for 1,200 subscribers", plan.Parts)
	}
	tests := []struct {
		name      string
		stored    map[int32][]string
		listing   []string
		wantFits  bool
		wantSizes map[int32]int
		wantTotal int
	}{
		{"a new snapshot", nil, members(0, 1200), true, map[int32]int{1: 500, 2: 500, 3: 200}, 1200},
		{"part 1 stored before a crash, the listing unchanged", map[int32][]string{1: members(0, 500)}, members(0, 1200), true,
			map[int32]int{2: 500, 3: 200}, 1200},
		{"part 1 stored, members left and came since", map[int32][]string{1: members(0, 500)}, append(members(100, 900), "newcomer"), true,
			map[int32]int{2: 500, 3: 1}, 1001},
		{"part 1 stored, more came than the parts left hold", map[int32][]string{1: members(0, 500)}, members(0, 1600), false, nil, 0},
		{"every part stored", map[int32][]string{1: members(0, 500), 2: members(500, 500), 3: members(1000, 200)}, members(0, 1200), true,
			map[int32]int{}, 1200},
		{"an empty account", nil, nil, true, map[int32]int{1: 0, 2: 0, 3: 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, total, fits := fillParts(plan, tt.stored, tt.listing)
			if fits != tt.wantFits {
				t.Fatalf("fits %v", fits)
			}
			if !fits {
				return
			}
			if total != tt.wantTotal || len(parts) != len(tt.wantSizes) {
				t.Fatalf("total %d, parts %v", total, parts)
			}
			seen := map[string]bool{}
			for _, subs := range tt.stored {
				for _, s := range subs {
					seen[s] = true
				}
			}
			for part, size := range tt.wantSizes {
				if len(parts[part]) != size || parts[part] == nil {
					t.Errorf("part %d has %d, want %d", part, len(parts[part]), size)
				}
				for _, s := range parts[part] {
					if seen[s] {
						t.Errorf("%s placed twice", s)
					}
					seen[s] = true
				}
			}
			for _, s := range tt.listing {
				if !seen[s] {
					t.Errorf("%s of the listing is in no part", s)
				}
			}
		})
	}
}

func TestSnapshotTimeIsBeforeTheListingBegins(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 123456789, time.UTC)
	got := snapshotTime(now)
	if want := now.Add(-clockSkew).Truncate(time.Millisecond); !got.Equal(want) || !got.Before(now) {
		t.Fatalf("T = %s for a listing at %s", got, now)
	}
	if a, b := snapshotID("1", "@TOA#_a", got), snapshotID("1", "@TOA#_a", time.UnixMilli(got.UnixMilli())); a != b {
		t.Fatal("the id of T read back from the status differs")
	}
}
