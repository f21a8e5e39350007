package main

import (
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
)

// --memcache-max-value-size and --redis-max-request-size set the protocols' size limits, so that
// a memcached run with -I 4m can store what nutcracker forwards to it; they are podblocks' own
// options: spelled out in full, with one dash or two, never abbreviated. Without them the
// protocols keep their defaults. The old code had no such options and always used the defaults.
func TestSizeLimitOptions(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		value, request  int
		wantErrContains string
	}{
		{args: []string{"-c", "x.yml"}},
		{args: []string{"--memcache-max-value-size=4194304", "--redis-max-request-size", "134217728"}, value: 4 << 20, request: 128 << 20},
		{args: []string{"-memcache-max-value-size", "2097152"}, value: 2 << 20},
		{args: []string{"--memcache-max-value-size=0"}, wantErrContains: "requires a non-zero number of bytes"},
		{args: []string{"--redis-max-request-size=4m"}, wantErrContains: "requires a non-zero number of bytes"},
		{args: []string{"--redis-max-request-size=2147483648"}, wantErrContains: "value 2147483648 is over the largest size, 2147483647"},
		{args: []string{"--memcache-max-value-size=99999999999999999999"}, wantErrContains: "is over the largest size"},
		{args: []string{"--redis-max-request-size"}, wantErrContains: "option --redis-max-request-size requires a number"},
		{args: []string{"--memcache-max=4194304"}, wantErrContains: "invalid option"},
	} {
		a, err := parseNutcrackerArgs(tc.args, false)
		if tc.wantErrContains != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
				t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.wantErrContains)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		p := protocols(a)
		if got := p.Memcache.(*memcache.Protocol).MaxValueSize; got != tc.value {
			t.Errorf("%q: memcache MaxValueSize %d, want %d", tc.args, got, tc.value)
		}
		if got := p.Redis.(*redis.Protocol).MaxRequestSize; got != tc.request {
			t.Errorf("%q: redis MaxRequestSize %d, want %d", tc.args, got, tc.request)
		}
	}
	for _, want := range []string{"--memcache-max-value-size=N", "default: 1048576", "--redis-max-request-size=N", "default: 67108864"} {
		if !strings.Contains(nutcrackerUsage, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	if memcache.DefaultMaxValueSize != 1048576 || redis.DefaultMaxRequestSize != 67108864 {
		t.Errorf("the usage's defaults are stale: memcache %d, redis %d", memcache.DefaultMaxValueSize, redis.DefaultMaxRequestSize)
	}
}
