package twemproxy_test

import (
	"fmt"
	"testing"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// BenchmarkPlace measures key placement per distribution; "hash-only" is the baseline: the
// pool's hash function alone, without hash_tag or the continuum search.
func BenchmarkPlace(b *testing.B) {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:{%d}:profile:%d", i%97, i)
	}
	yml := "p:\n  listen: 127.0.0.1:1\n  hash: fnv1a_64\n  distribution: %s\n  hash_tag: \"{}\"\n  servers:\n"
	for i := range 8 {
		yml += fmt.Sprintf("   - 10.0.0.%d:6379:1\n", i+1)
	}
	h, _ := twemproxy.LookupHash("fnv1a_64")
	b.Run("hash-only", func(b *testing.B) {
		b.ReportAllocs()
		var sink uint32
		for i := 0; b.Loop(); i++ {
			sink += h(keys[i&1023])
		}
		_ = sink
	})
	for _, dist := range []string{"ketama", "modula"} {
		cfg, err := twemproxy.Parse(fmt.Appendf(nil, yml, dist))
		if err != nil {
			b.Fatal(err)
		}
		pl := twemproxy.NewPlacer(cfg.Pools[0], nil)
		b.Run(dist, func(b *testing.B) {
			b.ReportAllocs()
			sink := 0
			for i := 0; b.Loop(); i++ {
				sink += pl.Place(keys[i&1023])
			}
			_ = sink
		})
	}
}
