// Package testbin is TestMain for the tests of a command that run the command as a real process:
// it builds the package under test once, runs the tests under goleak, and removes the binary.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Main builds the Go package in the current directory (the command under test) as name in a
// temporary directory, stores the binary's path in *path, and runs m under goleak.VerifyTestMain.
// It exits 1 if the build fails, and removes the binary when the tests end.
func Main(m *testing.M, name string, path *string, opts ...goleak.Option) {
	dir, err := os.MkdirTemp("", name+"-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		os.Exit(1)
	}
	*path = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", *path, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "testbin: go build %s: %v\n%s", name, err, out)
		os.Exit(1)
	}
	// goleak calls the cleanup instead of os.Exit, so the cleanup must exit with the code it is given
	// (which includes a leak failure).
	opts = append(opts, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
	goleak.VerifyTestMain(m, opts...)
}
