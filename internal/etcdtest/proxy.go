package etcdtest

import (
	"testing"

	"github.com/podblocks/podblocks/internal/faultproxy"
)

// Proxy is a faultproxy.Proxy in front of an etcd member (Pause, Resume, CloseConns, Close).
type Proxy struct{ *faultproxy.Proxy }

// NewProxy starts a proxy to target (host:port) and closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy { return &Proxy{faultproxy.New(t, target)} }

// URL returns the proxy's address as an http URL (an etcd client endpoint).
func (p *Proxy) URL() string { return "http://" + p.Addr() }
