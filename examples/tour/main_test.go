package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if role := childRole(os.Args); role != "" { // the acts run this test binary as their commands
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m)
}

// TestTour plays every act the way `go run ./examples/tour` does and checks each succeeded within the
// minute the README promises.
func TestTour(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	code, err := tour(context.Background(), &out, acts(), 30*time.Second, "")
	took := time.Since(start)
	t.Log("\n" + out.String())
	if err != nil || code != 0 {
		t.Fatalf("tour = %d, %v; want 0", code, err)
	}
	if took > time.Minute {
		t.Errorf("tour took %v, want under a minute", took)
	}
	for _, a := range acts() {
		if !strings.Contains(out.String(), a.pkg) {
			t.Errorf("summary lacks the %s act", a.pkg)
		}
	}
	if !strings.Contains(out.String(), "acts succeeded") {
		t.Error("no summary line")
	}
}
