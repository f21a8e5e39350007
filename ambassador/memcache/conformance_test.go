package memcache_test

import (
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

func TestConformance(t *testing.T) {
	c := twemproxytest.Cases{
		Single: []twemproxytest.Exchange{
			{Request: "get a\r\n", Keys: []string{"a"}, Response: "VALUE a 0 2\r\nhi\r\nEND\r\n"},
			{Request: "set k 0 0 2\r\nhi\r\n", Keys: []string{"k"}, Response: "STORED\r\n"},
			{Request: "incr n 1\r\n", Keys: []string{"n"}, Response: "2\r\n"},
		},
		Multi:          twemproxytest.Exchange{Request: "get a b\r\n", Keys: []string{"a", "b"}, Response: "VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n"},
		MultiKeyReplys: []string{"VALUE a 0 1\r\n1\r\nEND\r\n", "VALUE b 0 1\r\n2\r\nEND\r\n"},
		Unsupported:    "stats\r\n",
		Garbage:        "set k 0 0 1\r\nxyz\r\n",
		ProbeOK:        "VERSION 1.6.21\r\n",
	}
	if shardproc.Have(shardproc.MemcachedPath) {
		p, err := shardproc.StartMemcached()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		c.Server = p.Addr
	} else {
		t.Logf("%s not installed: probing a real server is skipped", shardproc.MemcachedPath)
	}
	twemproxytest.TestProtocol(t, &memcache.Protocol{}, c)
}
