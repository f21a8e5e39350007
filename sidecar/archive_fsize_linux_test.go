package sidecar

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestExtractTarWriteErrorIsNoBadArchive: a write that fails (the disk full; here the file size
// limit, EFBIG) is the machine's error, passed on as it is, not ErrBadArchive: the archive is fine
// and the sync is retried. The old code wrapped it in ErrBadArchive ("bad archive: write ...: no
// space left on device"). The limit is set in a child process: it holds for the whole process.
func TestExtractTarWriteErrorIsNoBadArchive(t *testing.T) {
	if os.Getenv("SIDECAR_FSIZE_CHILD") == "1" {
		fsizeChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExtractTarWriteErrorIsNoBadArchive$", "-test.v")
	cmd.Env = append(os.Environ(), "SIDECAR_FSIZE_CHILD=1", "SIDECAR_FSIZE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child ran no test:\n%s", out)
	}
}

func fsizeChild(t *testing.T) {
	// The Go runtime ignores SIGXFSZ: a write past the limit fails with EFBIG.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 4096, Max: 4096}); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	dir := filepath.Join(os.Getenv("SIDECAR_FSIZE_DIR"), "rev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	big := bytes.Repeat([]byte("x"), 64<<10)
	if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(big))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(big)
	tw.Close()
	err := extractTar(&buf, dir)
	if !errors.Is(err, syscall.EFBIG) || errors.Is(err, ErrBadArchive) {
		t.Errorf("extractTar = %v, want EFBIG, not ErrBadArchive", err)
	}
}
