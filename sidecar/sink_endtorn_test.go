package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestEndTornOnTheSameFile: a restart whose output is the file that holds a torn record's start
// ends it with a newline before the first record; the same file emptied in place since (a shell's
// >, which keeps the inode) gets no newline, which would be a line that is no record.
func TestEndTornOnTheSameFile(t *testing.T) {
	for _, tc := range []struct {
		name, before, want string
	}{
		{"torn start left", `{"file":"a","li`, `{"file":"a","li` + "\n" + `{"file":"f","line":"x","offset":0}` + "\n"},
		{"emptied in place", "", `{"file":"f","line":"x","offset":0}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out")
			if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := NewWriterSink(f)
			s.endTorn(outputID(f))
			if err := s.Write(context.Background(), []Record{{File: "f", Line: []byte("x")}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("file holds %q, want %q", got, tc.want)
			}
		})
	}
}
