package pdeathsig_test

import (
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/internal/pdeathsig"
)

func TestSetLinux(t *testing.T) {
	a := pdeathsig.Set(&syscall.SysProcAttr{Setpgid: true})
	if a.Pdeathsig != syscall.SIGKILL || !a.Setpgid {
		t.Fatalf("Set = %+v, want Pdeathsig SIGKILL and Setpgid kept", a)
	}
}
