package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSIGTERMStalledReaderCheckpointAndSamePipe: SIGTERM while the reader of logship's stdout pipe
// has stopped reading, in the middle of a batch. The checkpoint is exactly at the end of the last
// line the pipe took whole, neither behind it (a restart would ship those lines again) nor past it;
// and a restart writing into the same pipe (one that outlived logship, as in
// `while :; do logship ...; done | collector`) first ends the record the stop left written in part
// with a newline, then ships that record whole and the ones after it: the part stays a line of its
// own instead of the start of the next record. A failed Flush used to keep the checkpoint at the
// last commit before the reader stalled (hundreds of lines behind), and the restart's first record
// ran on from the part, both unreadable.
func TestSIGTERMStalledReaderCheckpointAndSamePipe(t *testing.T) {
	for _, format := range []string{"json", "raw"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			app := filepath.Join(dir, "app.log")
			lines, offsets := longLines()
			appendLines(t, app, lines[:2000]...)
			state := filepath.Join(dir, "state.json")
			args := []string{"-glob", app, "-state", state, "-format", format}
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()

			cmd := start(t, w, args...)
			got := readLines(t, r, 2000)
			appendLines(t, app, lines[2000:]...)
			more := make([]byte, 256<<10+37) // stops inside a line
			if _, err := io.ReadFull(r, more); err != nil {
				t.Fatal(err)
			}
			got = append(got, more...)
			stalled(t, r)
			term(t, cmd)
			got = append(got, readHeld(t, r)...)
			whole := got[:bytes.LastIndexByte(got, '\n')+1]
			first := shippedLines(t, format, whole)
			if diff := cmp.Diff(lines[:len(first)], first); diff != "" {
				t.Fatalf("first run: not the file's first lines, each once (-want +got):\n%s", diff)
			}
			torn := got[len(whole):]
			if off := checkpointOffset(t, state); off != offsets[len(first)] {
				t.Errorf("checkpoint at offset %d (line %d); the pipe took %d whole lines (up to offset %d) and %d bytes of the next",
					off, slices.Index(offsets, off), len(first), offsets[len(first)], len(torn))
			}
			from := slices.Index(offsets, checkpointOffset(t, state))
			if from < 0 {
				t.Fatal("checkpoint inside a line")
			}

			// Second run into the same pipe, with the reader reading.
			cmd = start(t, w, args...)
			second := readLines(t, r, len(lines)-from)
			term(t, cmd)
			second = append(second, readHeld(t, r)...)
			out := append(slices.Clip(torn), second...)
			if len(torn) > 0 {
				// The part, ended by the restart's newline: a line of its own, the start of the
				// record after the last whole one.
				part, rest, ok := bytes.Cut(out, []byte("\n"))
				want := string(lines[len(first)])
				if format == "json" {
					want = string(jsonRecord(t, app, lines[len(first)], offsets[len(first)]))
				}
				if !ok || !strings.HasPrefix(want, string(part)) || len(part) == len(want) {
					t.Fatalf("output after the first run's %d whole lines: %.200q; want the start of %.200q, then a newline", len(first), out, want)
				}
				out = rest
			}
			if diff := cmp.Diff(lines[from:], shippedLines(t, format, out)); diff != "" {
				t.Errorf("second run from the checkpoint (line %d) (-want +got):\n%s", from, diff)
			}
			t.Logf("first run: %d whole lines and %d bytes of the next; checkpoint at line %d", len(first), len(torn), from)
		})
	}
}

// readHeld reads what the pipe r holds now, without waiting for more.
func readHeld(t *testing.T, r *os.File) []byte {
	t.Helper()
	b := make([]byte, pipeHolds(t, r))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonRecord is the JSON line logship writes for line at off in file, without its newline.
func jsonRecord(t *testing.T, file, line string, off int64) []byte {
	t.Helper()
	b, err := json.Marshal(struct {
		File   string `json:"file"`
		Line   string `json:"line"`
		Offset int64  `json:"offset"`
	}{file, line, off})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
