package model

import (
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
