package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/cmdline"
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

// TestParseFlags: help is not an error; a stray argument (the flag package stops there and drops the
// flags after it) or an act timeout of zero is a usage error (exit 2), named in the message.
func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-act-timeout") {
		t.Errorf("-h: %v, output %q; want flag.ErrHelp and the usage", err, out.String())
	}
	for args, want := range map[string][]string{
		`unexpected arguments ["extra" "-serve" ":1"]`: {"extra", "-serve", ":1"},
		"-act-timeout 0s": {"-act-timeout", "0"},
	} {
		_, err := parseFlags(want, &out)
		if cmdline.Status(err) != 2 || err == nil || !strings.Contains(err.Error(), args) {
			t.Errorf("%q: %v (status %d); want a usage error naming %q", want, err, cmdline.Status(err), args)
		}
	}
	o, err := parseFlags([]string{"-serve", ":8080", "-act-timeout", "5s"}, &out)
	if err != nil || o.serve != ":8080" || o.actTimeout != 5*time.Second {
		t.Errorf("parseFlags = %+v, %v", o, err)
	}
}
