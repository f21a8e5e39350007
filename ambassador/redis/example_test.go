package redis_test

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// How the proxy sees an MSET: the keys it routes, split over shards when they differ.
func ExampleProtocol_ReadRequest() {
	p := &redis.Protocol{}
	in := "*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\nKEYS *\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	var r twemproxy.Request
	if err := p.ReadRequest(br, &r); err != nil {
		fmt.Println(err)
		return
	}
	for i := range r.Keys {
		fmt.Printf("key %s\n", r.Key(i))
	}
	var keys twemproxy.Request
	_ = p.ReadRequest(br, &keys)
	fmt.Printf("%q\n", keys.Resp)
	// Output:
	// key a
	// key b
	// "-ERR unsupported command 'KEYS' (not forwarded by the sharding proxy)\r\n"
}
