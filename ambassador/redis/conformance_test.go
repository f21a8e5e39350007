package redis_test

import (
	"testing"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

func TestConformance(t *testing.T) {
	c := twemproxytest.Cases{
		Single: []twemproxytest.Exchange{
			{Request: encode("GET", "a"), Keys: []string{"a"}, Response: "$2\r\nhi\r\n"},
			{Request: encode("SET", "k", "v"), Keys: []string{"k"}, Response: "+OK\r\n"},
			{Request: encode("HGETALL", "h"), Keys: []string{"h"}, Response: "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"},
			{Request: encode("GET", "r3"), Keys: []string{"r3"}, Response: "%1\r\n+k\r\n(12345678901234567890\r\n"},
		},
		Multi:          twemproxytest.Exchange{Request: encode("MGET", "a", "b"), Keys: []string{"a", "b"}, Response: "*2\r\n$1\r\n1\r\n$-1\r\n"},
		MultiKeyReplys: []string{"*1\r\n$1\r\n1\r\n", "*1\r\n$-1\r\n"},
		Unsupported:    encode("KEYS", "*"),
		Garbage:        "*2\r\n$x\r\n",
		ProbeOK:        "+PONG\r\n",
	}
	if shardproc.Have(shardproc.RedisPath) {
		p, err := shardproc.StartRedis()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		c.Server = p.Addr
	} else {
		t.Logf("%s not installed: probing a real server is skipped", shardproc.RedisPath)
	}
	twemproxytest.TestProtocol(t, &redis.Protocol{}, c)
}
