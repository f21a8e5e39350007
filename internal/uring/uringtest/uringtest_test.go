package uringtest_test

import (
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/uring/uringtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestInjectRestores: a fault lasts until its test ends.
func TestInjectRestores(t *testing.T) {
	want := uringtest.Probe()
	t.Run("refused", func(t *testing.T) {
		uringtest.Inject(t, uringtest.Faults{SetupErr: syscall.EPERM})
		if got := uringtest.Probe(); got != "io_uring_setup: operation not permitted" {
			t.Errorf("Probe() with setup refused = %q", got)
		}
	})
	if got := uringtest.Probe(); got != want {
		t.Errorf("Probe() after the subtest = %q, before %q", got, want)
	}
}
