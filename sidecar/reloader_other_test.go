//go:build !unix

package sidecar_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/sidecar"
)

func TestSignalActionsUnsupported(t *testing.T) {
	for name, a := range map[string]sidecar.Action{
		"pid":  sidecar.SignalPID(os.Getpid(), syscall.SIGHUP),
		"name": sidecar.SignalName("", "anything", syscall.SIGHUP),
	} {
		if err := a(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: err = %v, want one wrapping errors.ErrUnsupported", name, err)
		}
	}
}
