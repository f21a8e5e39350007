package twemproxy

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// A pool's listener that closes after another pool bound its unix socket path must leave the other
// pool's socket file in place (Go's UnixListener unlinks its path on Close).
func TestCloseListenerKeepsNewerSocketFile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	var conns connCounts
	cfg := &PoolConfig{Name: "a", Listen: sock, ListenNetwork: "unix", ListenAddr: sock,
		Distribution: Ketama, ServerConnections: 1,
		Servers: []ServerConfig{{Network: "tcp", Addr: "127.0.0.1:1", Weight: 1, Name: "s"}}}
	older := newPool(cfg, nil, defaultOptions(), &conns)
	if err := older.listen(); err != nil {
		t.Fatal(err)
	}
	newer := newPool(cfg, nil, defaultOptions(), &conns)
	if err := newer.listen(); err != nil {
		older.closeListener()
		t.Fatal(err)
	}
	defer newer.closeListener()
	older.closeListener()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the older listener's close removed the newer one's socket file: %v", err)
	}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the newer listener: %v", err)
	}
	c.Close()
	newer.closeListener()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the newer listener's close left its socket file: %v", err)
	}
}

// hostsCollide, which refuses a reload before anything stops, never says that two hosts on one port
// collide when both can be bound, and on Linux agrees with the bind wherever both hosts are IP
// addresses or either is :: or empty, a name beside them too (the old code left a wildcard beside a
// name to the bind, which failed once the moved pool was stopped); hostsOverlap, which orders the
// binds, never says that two hosts do not overlap when the second bind fails. Each host is bound by
// pool.listen, as a pool binds it: 0.0.0.0 on IPv4 only, as nutcracker binds it, so that it leaves
// the port free on ::1, on this machine's other IPv6 addresses, and on a link-local one with its zone
// (the old code listened on 0.0.0.0 for IPv6 too, and said it collides with them). A host this
// machine cannot bind is skipped.
func TestHostsCollideAgreesWithBind(t *testing.T) {
	hosts := append([]string{"127.0.0.1", "127.0.0.2", "0.0.0.0", "::", "", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "localhost"},
		machineHosts(t)...)
	var conns connCounts
	listen := func(addr string) (*pool, error) {
		p := newPool(&PoolConfig{Name: "p", ListenNetwork: "tcp", ListenAddr: addr, Distribution: Ketama, ServerConnections: 1,
			Servers: []ServerConfig{{Network: "tcp", Addr: "127.0.0.1:1", Weight: 1, Name: "s"}}}, nil, defaultOptions(), &conns)
		return p, p.listen()
	}
	bindable := map[string]bool{}
	for _, h := range hosts {
		p, err := listen(net.JoinHostPort(h, "0"))
		if err != nil {
			t.Logf("%s cannot be bound here: %v", h, err)
			continue
		}
		p.closeListener()
		bindable[h] = true
	}
	checked := 0
	for _, held := range hosts {
		for _, other := range hosts {
			if held == other || !bindable[held] || !bindable[other] {
				continue
			}
			probe, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(probe.Addr().String())
			probe.Close()
			a := &PoolConfig{ListenNetwork: "tcp", ListenAddr: net.JoinHostPort(held, port)}
			b := &PoolConfig{ListenNetwork: "tcp", ListenAddr: net.JoinHostPort(other, port)}
			first, err := listen(a.ListenAddr)
			if err != nil {
				t.Logf("%s cannot be bound here: %v", a.ListenAddr, err) // another process took the port
				continue
			}
			second, err := listen(b.ListenAddr)
			if err == nil {
				second.closeListener()
			}
			first.closeListener()
			fails := err != nil
			ha, ia, okA := listenIP(a)
			hb, ib, okB := listenIP(b)
			dual := okA && ia.IsUnspecified() && (ha == "" || ia.Is6()) || okB && ib.IsUnspecified() && (hb == "" || ib.Is6())
			exact := okA && okB || dual
			if collide := hostsCollide(a, b); collide && !fails || !collide && fails && exact && runtime.GOOS == "linux" {
				t.Errorf("hostsCollide(%s, %s) = %v, but binding both: %v", a.ListenAddr, b.ListenAddr, collide, err)
			}
			if okA && okB && ia.Is4() && ia.IsUnspecified() && ib.Is6() && !ib.IsUnspecified() && fails {
				t.Errorf("binding %s beside %s: %v; 0.0.0.0 must leave IPv6 free, as nutcracker's does", a.ListenAddr, b.ListenAddr, err)
			}
			if !hostsOverlap(a, b) && fails {
				t.Errorf("hostsOverlap(%s, %s) = false, but binding both: %v", a.ListenAddr, b.ListenAddr, err)
			}
			checked++
		}
	}
	t.Logf("%d pairs of hosts checked", checked)
}

// machineHosts returns this machine's addresses beyond loopback: an IPv4 address, an IPv6 one that
// is not link-local, and a link-local IPv6 one with its zone, those of them it has.
func machineHosts(t *testing.T) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Logf("interfaces: %v", err)
		return nil
	}
	var v4, v6, ll string
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil || ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr()
			switch {
			case ip.Is4() && v4 == "":
				v4 = ip.String()
			case ip.Is6() && ip.IsLinkLocalUnicast() && ll == "":
				ll = ip.WithZone(ifc.Name).String()
			case ip.Is6() && ip.IsGlobalUnicast() && v6 == "":
				v6 = ip.String()
			}
		}
	}
	var hosts []string
	for _, h := range []string{v4, v6, ll} {
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
