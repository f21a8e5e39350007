package memcache_test

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

const memcpingPath = "/usr/bin/memcping" // Debian package libmemcached-tools

// libmemcachedVersion is how libmemcached reads a "VERSION" reply: three decimal numbers, each
// at most 255, separated by dots; the third ends at the first byte that is not a digit.
var libmemcachedVersion = regexp.MustCompile(`^VERSION ([0-9]+)\.([0-9]+)\.([0-9]+)[^\r\n]*\r\n$`)

// The default "version" reply is one libmemcached's ping and version calls accept: with the old
// "VERSION podblocks", memcping failed with "UNKNOWN READ FAILURE".
func TestDefaultVersionReadsAsLibmemcached(t *testing.T) {
	// "version" is answered by the proxy: the server is never dialed.
	addr, _, _ := twemproxytest.StartPool(t, "mc", false, "", []string{"127.0.0.1:1"},
		twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	c := dial(t, addr)
	c.send("version\r\n")
	got := c.line()
	m := libmemcachedVersion.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("version reply %q is not major.minor.micro", got)
	}
	for _, n := range m[1:] {
		if v, err := strconv.Atoi(n); err != nil || v > 255 {
			t.Errorf("version reply %q: %q is not a number of at most 255", got, n)
		}
	}
	if _, err := exec.LookPath(memcpingPath); err != nil {
		t.Skipf("%s is not installed (Debian package libmemcached-tools); the reply parses, memcping not run", memcpingPath)
	}
	if out, err := exec.Command(memcpingPath, "--servers="+addr).CombinedOutput(); err != nil {
		t.Errorf("memcping --servers=%s: %v %s", addr, err, out)
	}
}
