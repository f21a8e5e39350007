package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// fpMax is how many leading bytes of a file its fingerprint covers.
const fpMax = 1024

// fileID is a file's identity on its filesystem.
type fileID struct{ dev, ino uint64 }

// fingerprint hashes the first n bytes of r. ok is false when fewer bytes are available.
func fingerprint(r io.ReaderAt, n int64) (fp string, ok bool) {
	if n <= 0 {
		return "", true
	}
	var buf [fpMax]byte
	got, err := r.ReadAt(buf[:n], 0)
	if int64(got) < n && err != nil {
		return "", false
	}
	return hashFP(buf[:n]), true
}

// hashFP is the fingerprint of a file whose first bytes are b.
func hashFP(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// checkpointEntry is one file's persisted state.
type checkpointEntry struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	FP     string `json:"fp,omitempty"`
	FPLen  int64  `json:"fp_len"`
	Offset int64  `json:"offset"`
	// Unlinked tells that the file had been deleted while the Tailer still read it: no restart can
	// open it again, and its inode may be reused by another file, so the entry is never resumed.
	Unlinked bool `json:"unlinked,omitempty"`
	// Size is an unlinked file's size as the last commit of a Tailer that stopped saw it: lines
	// past Offset up to it were never shipped. 0 when not known (the Tailer was killed, or an
	// older version wrote the entry).
	Size int64 `json:"size,omitempty"`
}

// checkpointState is the checkpoint file's content.
type checkpointState struct {
	Version  int    `json:"version"`
	SinkMark string `json:"sink_mark,omitempty"`
	// SinkTorn identifies the output a WriterSink left a record written in part in (see
	// WriterSink.torn); empty when none.
	SinkTorn string            `json:"sink_torn,omitempty"`
	Files    []checkpointEntry `json:"files"`
}

// parseCheckpoint parses and validates a checkpoint.
func parseCheckpoint(data []byte) (checkpointState, error) {
	var st checkpointState
	if err := json.Unmarshal(data, &st); err != nil {
		return checkpointState{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	if st.Version != 1 {
		return checkpointState{}, fmt.Errorf("%w: version %d", ErrBadCheckpoint, st.Version)
	}
	for i, e := range st.Files {
		if e.Offset < 0 || e.FPLen < 0 || e.FPLen > fpMax || (e.FPLen > 0 && len(e.FP) != 32) {
			return checkpointState{}, fmt.Errorf("%w: files[%d]", ErrBadCheckpoint, i)
		}
	}
	return st, nil
}

// loadCheckpoint reads the checkpoint at path; found is false when there is none.
func loadCheckpoint(path string) (st checkpointState, found bool, err error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return checkpointState{}, false, nil
	}
	if err != nil {
		return checkpointState{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	st, err = parseCheckpoint(data)
	return st, err == nil, err
}

// writeCheckpoint replaces the checkpoint at path atomically: a temporary file, fsync, rename, and
// fsync of the directory.
func writeCheckpoint(path string, st checkpointState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // best effort: some filesystems refuse to sync directories
		d.Close()
	}
	return nil
}
