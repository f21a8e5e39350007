package ambassador

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestAcceptNext: past failures other than net.ErrClosed, acceptNext logs each and tries again
// after a back-off of 5ms doubling up to 1s, until a connection comes; it returns net.ErrClosed
// at once, and a failure's error when ctx ends during its back-off.
func TestAcceptNext(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	for _, tc := range []struct {
		name      string
		fails     int   // failures before a connection
		last      error // the error of the try after them, if any
		cancelAt  time.Duration
		wantConn  bool
		wantErr   error
		wantTries int
		wantWait  time.Duration
	}{
		{name: "connection at once", wantConn: true, wantTries: 1},
		{name: "after ten failures", fails: 10, wantConn: true, wantTries: 11,
			wantWait: (5 + 10 + 20 + 40 + 80 + 160 + 320 + 640 + 1000 + 1000) * time.Millisecond},
		{name: "closed", fails: 2, last: fmt.Errorf("accept: %w", net.ErrClosed), wantErr: net.ErrClosed, wantTries: 3,
			wantWait: 15 * time.Millisecond},
		{name: "ctx ends in a back-off", fails: 100, cancelAt: 100 * time.Millisecond, wantErr: syscall.EMFILE,
			wantTries: 5, wantWait: 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logs, observed := observer.New(zap.WarnLevel)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.cancelAt > 0 {
					time.AfterFunc(tc.cancelAt, cancel)
				}
				tries := 0
				start := time.Now()
				c, err := acceptNext(ctx, zap.New(logs), new(acceptBackoff), func() (*int, error) {
					tries++
					switch {
					case tries <= tc.fails:
						return nil, emfile
					case tc.last != nil:
						return nil, tc.last
					}
					return &tries, nil
				})
				if (c != nil) != tc.wantConn || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Errorf("acceptNext = %v, %v; want a connection %v, error %v", c, err, tc.wantConn, tc.wantErr)
				}
				got := []any{tries, time.Since(start), observed.FilterMessage("accept").Len()}
				want := []any{tc.wantTries, tc.wantWait, min(tc.fails, tc.wantTries)}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("tries, time waited, warnings logged (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestAcceptNextAlternating: under fd pressure where every other accept fails with EMFILE (a slot
// frees, one connection is taken, the next accept fails), the back-off carries over the accepted
// connections: a second of it logs about as many warnings as one back-off from 5ms to 1s does,
// and one a second after. A second without failures starts the back-off at 5ms again.
func TestAcceptNextAlternating(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs, observed := observer.New(zap.WarnLevel)
		log := zap.New(logs)
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
		tries := 0
		accept := func() (*int, error) {
			tries++
			if tries%2 == 1 {
				return nil, emfile
			}
			return &tries, nil
		}
		var b acceptBackoff
		for start := time.Now(); time.Since(start) < 3*time.Second; {
			if _, err := acceptNext(t.Context(), log, &b, accept); err != nil {
				t.Fatal(err)
			}
		}
		// 5ms doubling to 640ms is 8 back-offs in 1275ms, then one a second.
		if n := observed.Len(); n > 11 {
			t.Errorf("%d accept warnings in 3s of alternating failures, want at most 11", n)
		}
		time.Sleep(1100 * time.Millisecond)
		start := time.Now()
		if _, err := acceptNext(t.Context(), log, &b, accept); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 5*time.Millisecond {
			t.Errorf("back-off after a quiet second = %v, want 5ms", waited)
		}
	})
}
