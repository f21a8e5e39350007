package twemproxy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// A bad value gets one message that names the line, the pool, the key and the value, and for a
// key with a set of values the ones it accepts; the package's name leads it and appears nowhere
// else. It used to read `... "hash": twemproxy: unknown hash: "md4"`.
func TestConfigErrorMessages(t *testing.T) {
	pool := func(line string) string {
		return "m:\n  listen: 127.0.0.1:1\n" + line + "\n  servers:\n   - 1.1.1.1:1:1\n"
	}
	hashes := "crc16, crc32, crc32a, fnv1_32, fnv1_64, fnv1a_32, fnv1a_64, hsieh, jenkins, md5, murmur, one_at_a_time"
	for _, tc := range []struct {
		name, yaml, want string
		is               error
	}{
		{"unknown hash", pool("  hash: md4"),
			`twemproxy: config line 3: pool "m": "hash": "md4" is not one of ` + hashes, twemproxy.ErrUnknownHash},
		{"unknown distribution", pool("  distribution: rendezvous"),
			`twemproxy: config line 3: pool "m": "distribution": "rendezvous" is not one of ketama, modula, random`,
			twemproxy.ErrUnknownDistribution},
		{"bad bool", pool("  redis: yes"), `twemproxy: config line 3: pool "m": "redis": "yes" is not "true" or "false"`, nil},
		{"bad number", pool("  timeout: -1"), `twemproxy: config line 3: pool "m": "timeout": "-1" is not a number`, nil},
		{"bad hash tag", pool(`  hash_tag: "{"`),
			`twemproxy: config line 3: pool "m": "hash_tag": "{" is not a valid hash tag string with two characters`, nil},
		{"bad listen", "m:\n  listen: localhost\n  servers:\n   - 1.1.1.1:1:1\n",
			`twemproxy: config line 2: pool "m": "listen": "localhost" has an invalid "hostname:port" format string`, nil},
		// A password is never written to a message.
		{"redis_auth in a memcache pool", pool("  redis_auth: s3cret"),
			`twemproxy: config line 3: pool "m": "redis_auth": is only valid for a redis pool`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := twemproxy.Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
		})
	}

	// A Config built in Go names the field, as validatePool's other messages do.
	for _, tc := range []struct {
		name string
		edit func(p *twemproxy.PoolConfig)
		want string
		is   error
	}{
		{"unknown Hash", func(p *twemproxy.PoolConfig) { p.Hash = "md4" },
			`twemproxy: config: pool "a": "hash": Hash "md4" is not one of ` + hashes, twemproxy.ErrUnknownHash},
		{"unknown Distribution", func(p *twemproxy.PoolConfig) { p.Distribution = "x" },
			`twemproxy: config: pool "a": "distribution": Distribution "x" is not one of ketama, modula, random`,
			twemproxy.ErrUnknownDistribution},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := handBuilt("127.0.0.1:1", "127.0.0.1:2")
			tc.edit(pc)
			_, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{pc}}, bothProtocols)
			if err == nil {
				t.Fatal("NewServer accepted it")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
		})
	}

	// No message of the bad configurations repeats the package's name.
	for _, tc := range badConfigs {
		if _, err := twemproxy.Parse([]byte(tc.yaml)); err != nil && strings.Count(err.Error(), "twemproxy:") != 1 {
			t.Errorf("%s: %q names the package more than once", tc.name, err)
		}
	}
}
