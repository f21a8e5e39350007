package ambassadortest

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// SRV is one SRV record a DNSServer answers.
type SRV struct {
	Target   string
	Port     uint16
	Weight   uint16
	Priority uint16 // lower is preferred (RFC 2782)
}

// DNSServer is a real DNS server on 127.0.0.1 (UDP) answering A, AAAA and SRV questions from
// records set with SetA and SetSRV; other names get NXDOMAIN. Resolver returns a *net.Resolver
// that asks it, for testing DNS-based discovery without touching the system resolver.
type DNSServer struct {
	Addr string

	mu   sync.Mutex
	a    map[string][]netip.Addr
	srv  map[string][]SRV
	pc   net.PacketConn
	done chan struct{}
	last atomic.Int64 // unix nanos of the last query
}

// NewDNSServer starts a DNS server; it stops at t's cleanup.
func NewDNSServer(t testing.TB) *DNSServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	d := &DNSServer{Addr: pc.LocalAddr().String(), a: map[string][]netip.Addr{}, srv: map[string][]SRV{},
		pc: pc, done: make(chan struct{})}
	go d.serve()
	t.Cleanup(func() {
		// The Go resolver finishes a lookup in a goroutine of its own even after its caller gave
		// up; answer until queries stop (at most 3s) so those goroutines end too.
		for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(20 * time.Millisecond) {
			if time.Since(time.Unix(0, d.last.Load())) > 300*time.Millisecond {
				break
			}
		}
		pc.Close()
		<-d.done
	})
	return d
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// SetA sets the addresses (IPv4 answer A questions, IPv6 AAAA) of name; none removes the name.
func (d *DNSServer) SetA(name string, addrs ...netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(addrs) == 0 {
		delete(d.a, fqdn(name))
		return
	}
	d.a[fqdn(name)] = addrs
}

// SetSRV sets the SRV records of name; none removes them.
func (d *DNSServer) SetSRV(name string, recs ...SRV) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(recs) == 0 {
		delete(d.srv, fqdn(name))
		return
	}
	d.srv[fqdn(name)] = recs
}

// Resolver returns a pure-Go resolver that sends every question to d.
func (d *DNSServer) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", d.Addr)
	}}
}

func (d *DNSServer) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		d.last.Store(time.Now().UnixNano())
		if resp, ok := d.answer(buf[:n]); ok {
			d.pc.WriteTo(resp, from)
		}
	}
}

func (d *DNSServer) answer(req []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	addrs, hasA := d.a[name]
	srvs, hasSRV := d.srv[name]
	d.mu.Unlock()
	rcode := dnsmessage.RCodeSuccess
	if !hasA && !hasSRV {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: rcode})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch q.Type {
	case dnsmessage.TypeA:
		for _, a := range addrs {
			if a.Is4() {
				b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			}
		}
	case dnsmessage.TypeAAAA:
		for _, a := range addrs {
			if a.Is6() && !a.Is4In6() {
				b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	case dnsmessage.TypeSRV:
		for _, s := range srvs {
			target, err := dnsmessage.NewName(fqdn(s.Target))
			if err != nil {
				continue
			}
			b.SRVResource(rh, dnsmessage.SRVResource{Target: target, Port: s.Port, Weight: s.Weight, Priority: s.Priority})
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
