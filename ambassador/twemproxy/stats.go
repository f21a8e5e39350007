package twemproxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/jsonstr"
)

// PoolStats is a snapshot of one pool's counters, named as in nutcracker's stats.
type PoolStats struct {
	Name string
	// ClientEOF counts the clients that closed their side or sent quit (memcache) or QUIT
	// (redis), once each, as nutcracker's client_eof does.
	ClientEOF         int64
	ClientErr         int64
	ClientConnections int64
	ServerEjects      int64
	ForwardError      int64
	Fragments         int64
	// ClientRejected counts the connections closed at once because the pool had client_connections
	// open (nutcracker 0.5.0 does not enforce the limit); it is not in the stats JSON, whose
	// client_err counts the errors of accepted clients, as nutcracker's does.
	ClientRejected int64
	Servers        []ServerStats
}

// ServerStats is a snapshot of one server's counters, named as in nutcracker's stats.
type ServerStats struct {
	Name              string
	Addr              string
	Ejected           bool
	ServerEOF         int64
	ServerErr         int64
	ServerTimedout    int64
	ServerConnections int64
	ServerEjectedAt   int64 // unix microseconds of the last ejection, as nutcracker's; 0: never
	Requests          int64
	RequestBytes      int64
	Responses         int64
	ResponseBytes     int64
	InQueue           int64
	InQueueBytes      int64
	OutQueue          int64
	OutQueueBytes     int64 // not tracked: always 0
}

// StatsField is one field of a pool or of a server in the stats document (StatsJSON).
type StatsField struct {
	Name   string // as in the document: client_eof
	Server bool   // a field of each server; else of each pool
	Help   string
}

// StatsFields returns the fields of the stats document's pools and servers, in the document's order,
// each with what it counts: what nutcracker -D prints.
func StatsFields() []StatsField { return append([]StatsField(nil), statsFields...) }

var statsFields = []StatsField{
	{"client_eof", false, "client connections the client closed or ended with quit (memcache) or QUIT (redis)"},
	{"client_err", false, "client connections closed on an error"},
	{"client_connections", false, "open client connections"},
	{"server_ejects", false, "times a server of the pool was ejected"},
	{"forward_error", false, "requests answered with an error because their server failed"},
	{"fragments", false, "parts multi-key requests were split into"},
	{"server_eof", true, "server connections the server closed"},
	{"server_err", true, "server connection errors (dial, read, write)"},
	{"server_timedout", true, "requests whose response did not come within the pool's timeout"},
	{"server_connections", true, "open server connections"},
	{"server_ejected_at", true, "when the server was last ejected, microseconds since the Unix epoch; 0: never"},
	{"requests", true, "requests forwarded to the server, also those whose connection then failed"},
	{"request_bytes", true, "bytes of the requests forwarded to the server"},
	{"responses", true, "responses read from the server"},
	{"response_bytes", true, "bytes of the responses read from the server"},
	{"in_queue", true, "requests waiting to be sent to the server"},
	{"in_queue_bytes", true, "bytes of the requests waiting to be sent"},
	{"out_queue", true, "requests sent, waiting for their response"},
	{"out_queue_bytes", true, "bytes of the requests waiting for their response (not counted: always 0)"},
}

// connCounts counts connections as nutcracker's curr_connections and total_connections do: each
// pool's listener, each client connection, and each server connection from the moment it is dialed
// (a dial that fails counts in the total). The stats listener's connections and the health checks'
// probes (an extension) are not counted.
type connCounts struct{ curr, total atomic.Int64 }

// open counts a connection that opens; close one that closes.
func (c *connCounts) open()  { c.curr.Add(1); c.total.Add(1) }
func (c *connCounts) close() { c.curr.Add(-1) }

// Snapshot returns every pool's counters, pools in configuration order.
func (s *Server) Snapshot() []PoolStats {
	pools := s.runningPools()
	out := make([]PoolStats, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.snapshot())
	}
	return out
}

// snapshot returns p's counters. It reads its state's with p.mu held, so that a reload does not
// publish a new state meanwhile: a server that the reload moves takes the old one's counters as
// its base as it is published (see poolState.start), and a read of the old one that went on
// after that could see more than the new one starts from.
func (p *pool) snapshot() PoolStats {
	ps := PoolStats{Name: p.name, ClientEOF: p.clientEOF.Load(), ClientErr: p.clientErr.Load(),
		ClientConnections: p.clientConns.Load(), ServerEjects: p.serverEjects.Load(),
		ForwardError: p.forwardError.Load(), Fragments: p.fragments.Load(), ClientRejected: p.clientRejected.Load()}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, srv := range p.st.servers {
		ss := ServerStats{Name: srv.cfg.Name, Addr: srv.cfg.Addr, Ejected: srv.ejected(),
			ServerEOF: srv.eof.Load(), ServerErr: srv.errs.Load(), ServerTimedout: srv.timedout.Load(),
			ServerEjectedAt: srv.ejectedAt.Load()}
		srv.stats(&ss) // with the connections of the states still draining after a reload
		ps.Servers = append(ps.Servers, ss)
	}
	return ps
}

// StatsJSON returns the stats document nutcracker serves on its stats port, with the same fields.
// Pool and server names are written as nutcracker writes them, but for the quote, the backslash and
// the control characters, which are escaped, bytes that are not UTF-8 (possible only in a Config
// built in Go, or WithSource), each written as U+FFFD, and U+2028 and U+2029, written \u2028 and
// \u2029 as encoding/json writes them (see internal/jsonstr): the document is always valid JSON.
func (s *Server) StatsJSON() []byte {
	pools := s.Snapshot()
	b := make([]byte, 0, 1024)
	b = append(b, `{"service":"nutcracker", "source":`...)
	b = jsonstr.AppendString(b, s.opts.source)
	b = append(b, `, "version":"0.5.0-podblocks", "uptime":`...)
	up := int64(0)
	if !s.started.IsZero() {
		up = int64(time.Since(s.started) / time.Second)
	}
	b = strconv.AppendInt(b, up, 10)
	b = append(b, `, "timestamp":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = appendField(b, "total_connections", s.conns.total.Load())
	b = appendField(b, "curr_connections", s.conns.curr.Load())
	for _, p := range pools {
		b = append(b, ", "...)
		b = jsonstr.AppendString(b, p.Name)
		b = append(b, `: {"client_eof":`...)
		b = strconv.AppendInt(b, p.ClientEOF, 10)
		b = appendField(b, "client_err", p.ClientErr)
		b = appendField(b, "client_connections", p.ClientConnections)
		b = appendField(b, "server_ejects", p.ServerEjects)
		b = appendField(b, "forward_error", p.ForwardError)
		b = appendField(b, "fragments", p.Fragments)
		for _, sv := range p.Servers {
			b = append(b, ", "...)
			b = jsonstr.AppendString(b, sv.Name)
			b = append(b, `: {"server_eof":`...)
			b = strconv.AppendInt(b, sv.ServerEOF, 10)
			b = appendField(b, "server_err", sv.ServerErr)
			b = appendField(b, "server_timedout", sv.ServerTimedout)
			b = appendField(b, "server_connections", sv.ServerConnections)
			b = appendField(b, "server_ejected_at", sv.ServerEjectedAt)
			b = appendField(b, "requests", sv.Requests)
			b = appendField(b, "request_bytes", sv.RequestBytes)
			b = appendField(b, "responses", sv.Responses)
			b = appendField(b, "response_bytes", sv.ResponseBytes)
			b = appendField(b, "in_queue", sv.InQueue)
			b = appendField(b, "in_queue_bytes", sv.InQueueBytes)
			b = appendField(b, "out_queue", sv.OutQueue)
			b = appendField(b, "out_queue_bytes", sv.OutQueueBytes)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, "}\n"...)
	return b
}

func appendField(b []byte, name string, v int64) []byte {
	b = append(b, `, "`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, v, 10)
}

// listenStats opens the stats listener on addr as a pool's listener on its TCP address is opened
// (see listenTCP).
func listenStats(addr string) (net.Listener, error) {
	ln, err := listenTCP(context.Background(), &net.ListenConfig{}, addr)
	if err != nil {
		return nil, errors.Join(errors.New("twemproxy: stats listener"), err)
	}
	return ln, nil
}

// serveStats answers every connection with one stats document, then closes it.
func (s *Server) serveStats(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		doc := s.StatsJSON() // before the deadline, which bounds the write only
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(doc)
		c.Close()
	}
}

// Statusz is the /statusz table: one row per server.
func (s *Server) Statusz() (title string, header []string, rows [][]string) {
	header = []string{"pool", "server", "addr", "state", "connections", "requests", "responses", "errors", "timeouts", "ejects"}
	for _, p := range s.Snapshot() {
		for _, sv := range p.Servers {
			state := "live"
			if sv.Ejected {
				state = "ejected"
			}
			rows = append(rows, []string{p.Name, sv.Name, sv.Addr, state, strconv.FormatInt(sv.ServerConnections, 10),
				strconv.FormatInt(sv.Requests, 10), strconv.FormatInt(sv.Responses, 10),
				strconv.FormatInt(sv.ServerErr+sv.ServerEOF, 10), strconv.FormatInt(sv.ServerTimedout, 10),
				strconv.FormatInt(p.ServerEjects, 10)})
		}
	}
	return "sharding proxy (twemproxy-compatible)", header, rows
}

// runningPools returns the running pools in configuration order.
func (s *Server) runningPools() []*pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pools []*pool
	for _, name := range s.order {
		if r := s.running[name]; r != nil {
			pools = append(pools, r.p)
		}
	}
	return pools
}

// Collector returns the proxy's Prometheus collector (registered already under WithRegisterer).
func (s *Server) Collector() prometheus.Collector { return s.metrics }

type collector struct {
	s     *Server
	descs map[string]*prometheus.Desc
	resp  *prometheus.Desc // podblocks_sharding_server_response_seconds
}

type metricDef struct {
	name, help string
	gauge      bool
	server     bool
}

var metricDefs = []metricDef{
	{"podblocks_sharding_client_connections", "Open client connections.", true, false},
	{"podblocks_sharding_client_eof_total", "Client connections closed by the client or ended with quit (memcache) or QUIT (redis).", false, false},
	{"podblocks_sharding_client_errors_total", "Client connections closed on an error.", false, false},
	{"podblocks_sharding_client_rejected_total", "Client connections closed at once because the pool had client_connections open.", false, false},
	{"podblocks_sharding_server_ejects_total", "Times a server was ejected.", false, false},
	{"podblocks_sharding_forward_errors_total", "Requests answered with an error because their server failed.", false, false},
	{"podblocks_sharding_fragments_total", "Fragments multi-key requests were split into.", false, false},
	{"podblocks_sharding_server_requests_total", "Requests forwarded to the server, also those whose connection then failed.", false, true},
	{"podblocks_sharding_server_request_bytes_total", "Request bytes forwarded to the server.", false, true},
	{"podblocks_sharding_server_responses_total", "Responses read from the server.", false, true},
	{"podblocks_sharding_server_response_bytes_total", "Response bytes read from the server.", false, true},
	{"podblocks_sharding_server_errors_total", "Server connection errors (dial, read, write, EOF).", false, true},
	{"podblocks_sharding_server_timeouts_total", "Server responses that timed out.", false, true},
	{"podblocks_sharding_server_connections", "Open server connections.", true, true},
	{"podblocks_sharding_server_ejected", "1 while the server is ejected.", true, true},
	{"podblocks_sharding_server_in_queue_requests", "Requests queued for the server, not yet sent.", true, true},
	{"podblocks_sharding_server_out_queue_requests", "Requests sent to the server, awaiting a response.", true, true},
}

func newCollector(s *Server) *collector {
	c := &collector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, d := range metricDefs {
		labels := []string{"pool"}
		if d.server {
			labels = append(labels, "server")
		}
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, labels, nil)
	}
	c.resp = prometheus.NewDesc("podblocks_sharding_server_response_seconds",
		"Time from a request's queueing for the server to the read that brought its reply (the proxy's "+
			"write, the network and the server), for each reply read from the server.",
		[]string{"pool", "server"}, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.resp
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(name string, v int64, labels ...string) {
		t := prometheus.CounterValue
		for _, d := range metricDefs {
			if d.name == name && d.gauge {
				t = prometheus.GaugeValue
			}
		}
		ch <- prometheus.MustNewConstMetric(c.descs[name], t, float64(v), labels...)
	}
	for _, p := range c.s.Snapshot() {
		emit("podblocks_sharding_client_connections", p.ClientConnections, p.Name)
		emit("podblocks_sharding_client_eof_total", p.ClientEOF, p.Name)
		emit("podblocks_sharding_client_errors_total", p.ClientErr, p.Name)
		emit("podblocks_sharding_client_rejected_total", p.ClientRejected, p.Name)
		emit("podblocks_sharding_server_ejects_total", p.ServerEjects, p.Name)
		emit("podblocks_sharding_forward_errors_total", p.ForwardError, p.Name)
		emit("podblocks_sharding_fragments_total", p.Fragments, p.Name)
		for _, sv := range p.Servers {
			ej := int64(0)
			if sv.Ejected {
				ej = 1
			}
			emit("podblocks_sharding_server_requests_total", sv.Requests, p.Name, sv.Name)
			emit("podblocks_sharding_server_request_bytes_total", sv.RequestBytes, p.Name, sv.Name)
			emit("podblocks_sharding_server_responses_total", sv.Responses, p.Name, sv.Name)
			emit("podblocks_sharding_server_response_bytes_total", sv.ResponseBytes, p.Name, sv.Name)
			emit("podblocks_sharding_server_errors_total", sv.ServerErr+sv.ServerEOF, p.Name, sv.Name)
			emit("podblocks_sharding_server_timeouts_total", sv.ServerTimedout, p.Name, sv.Name)
			emit("podblocks_sharding_server_connections", sv.ServerConnections, p.Name, sv.Name)
			emit("podblocks_sharding_server_ejected", ej, p.Name, sv.Name)
			emit("podblocks_sharding_server_in_queue_requests", sv.InQueue, p.Name, sv.Name)
			emit("podblocks_sharding_server_out_queue_requests", sv.OutQueue, p.Name, sv.Name)
		}
	}
	for _, p := range c.s.runningPools() {
		for _, h := range p.histograms(c.resp) {
			ch <- h
		}
	}
}

// histograms returns the response-time histogram of each of p's servers, read with p.mu held as
// snapshot reads the counters.
func (p *pool) histograms(desc *prometheus.Desc) []prometheus.Metric {
	p.mu.RLock()
	defer p.mu.RUnlock()
	hs := make([]prometheus.Metric, 0, len(p.st.servers))
	for _, srv := range p.st.servers {
		count, sum, buckets := srv.histogram()
		hs = append(hs, prometheus.MustNewConstHistogram(desc, count, sum, buckets, p.name, srv.cfg.Name))
	}
	return hs
}
