package model

import (
	"slices"
	"strings"
	"testing"
)

// TestTableIDIs32Bits: a table id is a 32-bit number; 99999999999 is no table, not one
// truncated into another.
func TestTableIDIs32Bits(t *testing.T) {
	s := &State{TableNames: map[int]string{100: "uplink"}}
	for name, want := range map[string]int{"main": TableMain, "uplink": 100, "100": 100, "0": 0, "4294967295": 4294967295} {
		if id, err := s.TableID(name); err != nil || id != want {
			t.Errorf("TableID(%q) = %d, %v; want %d", name, id, err, want)
		}
	}
	for name, want := range map[string]string{
		"99999999999": "routing table 99999999999 is out of range: a table id is a number from 0 to 4294967295",
		"4294967296":  "out of range",
		"-1":          "not a number and not named",
		"nosuch":      `unknown routing table "nosuch"`,
		"":            "unknown routing table",
	} {
		if _, err := s.TableID(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("TableID(%q) = %v, want an error with %q", name, err, want)
		}
	}
}

// Table ids sort as the kernel's unsigned numbers: a 32-bit build holds one above 2^31-1 as a
// negative int, which still comes after every other.
func TestCompareTables(t *testing.T) {
	ids := []int{TableLocal, int(int32(-296)), 100, TableMain, 1}
	slices.SortFunc(ids, CompareTables)
	if want := []int{1, 100, TableMain, TableLocal, -296}; !slices.Equal(ids, want) {
		t.Errorf("sorted %v, want %v", ids, want)
	}
	if CompareTables(7, 7) != 0 || CompareTables(3, 7) >= 0 {
		t.Error("CompareTables is not an order of the ids")
	}
}
