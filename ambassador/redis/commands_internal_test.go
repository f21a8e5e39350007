package redis

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestEntrySize: a table slot is 32 bytes, a power of two.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(cmdEntry{}); n != 32 {
		t.Errorf("cmdEntry is %d bytes, want 32: change its padding", n)
	}
}

// TestHotCommandsFirstProbe: the hot commands are found at the first slot lookup looks at.
func TestHotCommandsFirstProbe(t *testing.T) {
	for _, name := range hotCommands {
		if _, ok := commands[name]; !ok {
			t.Errorf("hot command %s is not a command", name)
		}
		if got := cmdTable[cmdSlot([]byte(name))].name; got != name {
			t.Errorf("%s: its first slot holds %q", name, got)
		}
	}
}

// TestLookupFindsEveryCommand: the table finds every command of the map, under its upper-case
// name only, and no other name.
func TestLookupFindsEveryCommand(t *testing.T) {
	for name, info := range commands {
		if got := lookup([]byte(name)); got == nil || *got != info {
			t.Errorf("lookup(%q) = %v; want %v", name, got, info)
		}
		lower := bytes.ToLower([]byte(name))
		if lookup(lower) != nil && string(lower) != name {
			t.Errorf("lookup(%q) found a lower-case name", lower)
		}
		for _, other := range []string{name + "X", "X" + name, name[:len(name)-1] + "#"} {
			if _, ok := commands[other]; ok {
				continue
			}
			if lookup([]byte(other)) != nil {
				t.Errorf("lookup(%q) found a command that does not exist", other)
			}
		}
	}
}
