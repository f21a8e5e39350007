package redis

import (
	"bytes"
	"testing"
)

// TestLookupFindsEveryCommand: the table finds every command of the map, under its upper-case
// name only, and no other name.
func TestLookupFindsEveryCommand(t *testing.T) {
	for name, info := range commands {
		if got, ok := lookup([]byte(name)); !ok || got != info {
			t.Errorf("lookup(%q) = %v, %v; want %v", name, got, ok, info)
		}
		lower := bytes.ToLower([]byte(name))
		if _, ok := lookup(lower); ok && string(lower) != name {
			t.Errorf("lookup(%q) found a lower-case name", lower)
		}
		for _, other := range []string{name + "X", "X" + name, name[:len(name)-1] + "#"} {
			if _, ok := commands[other]; ok {
				continue
			}
			if _, ok := lookup([]byte(other)); ok {
				t.Errorf("lookup(%q) found a command that does not exist", other)
			}
		}
	}
}
