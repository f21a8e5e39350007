package memcache_test

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// How the proxy sees a multi-key get: its keys, each placed on its own shard.
func ExampleProtocol_ReadRequest() {
	p := &memcache.Protocol{}
	br := bufio.NewReader(strings.NewReader("get user:1 user:2 user:3\r\nflush_all\r\n"))
	var r twemproxy.Request
	if err := p.ReadRequest(br, &r); err != nil {
		fmt.Println(err)
		return
	}
	for i := range r.Keys {
		fmt.Printf("key %s\n", r.Key(i))
	}
	var unsupported twemproxy.Request
	_ = p.ReadRequest(br, &unsupported)
	fmt.Printf("flush_all -> %q\n", unsupported.Resp)
	// Output:
	// key user:1
	// key user:2
	// key user:3
	// flush_all -> "ERROR\r\n"
}
