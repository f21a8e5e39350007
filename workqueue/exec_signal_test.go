//go:build unix

package workqueue_test

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
)

// A command killed by a signal that the ExecWorker did not send (the OOM killer's SIGKILL, here
// its own) says so: the dead-letter reason is the error's message, and "exited with code -1"
// hid why the command ended.
func TestExecWorkerReportsKillingSignal(t *testing.T) {
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `echo "out of memory" >&2; kill -KILL $$`})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Handle(context.Background(), &workqueue.Item{ID: "oom", Payload: []byte("x"), Attempt: 1})
	var ee *workqueue.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Handle: %v, want an *ExitError", err)
	}
	if want := "command killed by signal 9 (killed): out of memory"; ee.Error() != want {
		t.Errorf("error %q, want %q", ee.Error(), want)
	}
	if ee.Code != -1 || ee.Signal != syscall.SIGKILL {
		t.Errorf("Code %d, Signal %v; want -1 and SIGKILL", ee.Code, ee.Signal)
	}
}
