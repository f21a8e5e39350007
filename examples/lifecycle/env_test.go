package main

import (
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/cmdline"
)

// A variable stands in for its flag only when the flag is not given: a flag given wins over a
// variable the command could not read, and help is help whatever the environment holds.
func TestFlagGivenOverridesItsVariable(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	if c, err := parse([]string{"-pprof=false"}, env("PPROF", "yes")); err != nil || c.Pprof {
		t.Errorf("PPROF=yes -pprof=false: pprof %v, err %v; want false, nil", c.Pprof, err)
	}
	if _, err := parse([]string{"-h"}, env("PPROF", "yes", "GRACE", "soon")); cmdline.Status(err) != 0 {
		t.Errorf("PPROF=yes GRACE=soon -h: %v (status %d); want help, status 0", err, cmdline.Status(err))
	}
	if c, err := parse(nil, env("PROPAGATION", "2s", "GRACE", "20s")); err != nil || c.Propagation != 2*time.Second || c.Grace != 20*time.Second {
		t.Errorf("PROPAGATION=2s GRACE=20s: %v %v, %v; want 2s 20s", c.Propagation, c.Grace, err)
	}
	if c, err := parse([]string{"-propagation", "3s"}, env("PROPAGATION", "2s")); err != nil || c.Propagation != 3*time.Second {
		t.Errorf("PROPAGATION=2s -propagation 3s: %v, %v; want 3s", c.Propagation, err)
	}
	_, err := parse(nil, env("PPROF", "yes"))
	if cmdline.Status(err) != 2 || !strings.Contains(err.Error(), `PPROF "yes"`) {
		t.Errorf("PPROF=yes alone: %v; want a usage error naming PPROF", err)
	}
}

// A variable the command cannot read is a usage error (exit 2) that names it and the form it wants.
func TestBadVariableIsAUsageError(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"GRACE", "abc", `GRACE "abc": want a duration`},
		{"PROPAGATION", "soon", `PROPAGATION "soon": want a duration`},
		{"SHED_LIMIT", "lots", `SHED_LIMIT "lots": want an integer`},
		{"POD_PRIORITY", "high", `POD_PRIORITY "high": want critical, default, sheddable or an integer`},
	} {
		err := run(nil, func(k string) string {
			if k == tc.env {
				return tc.val
			}
			return ""
		})
		if cmdline.Status(err) != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v (status %d); want a usage error containing %q", tc.env, tc.val, err, cmdline.Status(err), tc.want)
		}
	}
}
