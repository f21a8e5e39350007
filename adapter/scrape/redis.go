package scrape

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// RedisInfo is the book's redis example as a scrape-and-transform probe: it connects to a redis
// server (target "host:port"), sends INFO, and turns the reply into metrics:
//
//   - every numeric field becomes redis_<field> (a counter for the cumulative ones, such as
//     total_commands_processed and keyspace_hits, else a gauge);
//   - keyspace lines ("db0:keys=1,expires=0,avg_ttl=0") become redis_db_keys{db="db0"} and friends;
//   - redis_version, redis_mode, role and os become labels of redis_instance_info (value 1).
type RedisInfo struct {
	// Password, when set, is sent with AUTH first (Username too, for ACL users).
	Username, Password string
	// Dialer dials targets; nil means a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// ErrRedis is a redis error reply.
var ErrRedis = errors.New("scrape: redis error reply")

var redisCounters = map[string]bool{
	"total_connections_received": true, "total_commands_processed": true, "total_net_input_bytes": true,
	"total_net_output_bytes": true, "rejected_connections": true, "expired_keys": true, "evicted_keys": true,
	"keyspace_hits": true, "keyspace_misses": true, "total_error_replies": true, "sync_full": true,
	"sync_partial_ok": true, "sync_partial_err": true, "expired_stale_perc": false,
	"total_reads_processed": true, "total_writes_processed": true, "uptime_in_seconds": true,
}

var redisInfoLabels = []string{"redis_version", "redis_mode", "role", "os"}

// Probe implements Probe.
func (r *RedisInfo) Probe(ctx context.Context, target string) ([]Sample, error) {
	var d interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if r.Dialer != nil {
		d = r.Dialer
	}
	target = strings.TrimPrefix(target, "redis://")
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("scrape: redis dial: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReader(c)
	if r.Password != "" {
		args := []string{"AUTH", r.Password}
		if r.Username != "" {
			args = []string{"AUTH", r.Username, r.Password}
		}
		if _, err := redisCommand(c, br, args...); err != nil {
			return nil, err
		}
	}
	info, err := redisCommand(c, br, "INFO")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return ParseRedisInfo(info), nil
}

// redisCommand sends a command as a RESP array and reads one reply (simple string or bulk).
func redisCommand(w io.Writer, br *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", fmt.Errorf("scrape: redis write: %w", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("scrape: redis read: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("scrape: redis: empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("%w: %s", ErrRedis, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > 64<<20 {
			return "", fmt.Errorf("scrape: redis: bad bulk length %q", line)
		}
		if n == -1 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", fmt.Errorf("scrape: redis read: %w", err)
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("scrape: redis: unexpected reply %q", line)
}

// ParseRedisInfo turns the text of an INFO reply into samples (see RedisInfo).
func ParseRedisInfo(info string) []Sample {
	var out []Sample
	infoLabels := map[string]string{}
	for line := range strings.Lines(info) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		if strings.HasPrefix(k, "db") && strings.Contains(v, "=") {
			if _, err := strconv.Atoi(k[2:]); err == nil {
				for kv := range strings.SplitSeq(v, ",") {
					fk, fv, _ := strings.Cut(kv, "=")
					if f, err := strconv.ParseFloat(fv, 64); err == nil && labelNameRE.MatchString(fk) {
						out = append(out, Sample{Name: "redis_db_" + fk, Help: "Keyspace " + fk + " by database.",
							Type: prometheus.GaugeValue, Labels: []Label{{"db", k}}, Value: f})
					}
				}
				continue
			}
		}
		for _, l := range redisInfoLabels {
			if k == l {
				infoLabels[k] = v
			}
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !labelNameRE.MatchString(k) {
			continue
		}
		t := prometheus.GaugeValue
		if redisCounters[k] {
			t = prometheus.CounterValue
		}
		out = append(out, Sample{Name: "redis_" + k, Help: "redis INFO field " + k + ".", Type: t, Value: f})
	}
	if len(infoLabels) > 0 {
		s := Sample{Name: "redis_instance_info", Help: "redis INFO identity fields.", Type: prometheus.GaugeValue, Value: 1}
		for _, l := range redisInfoLabels {
			s.Labels = append(s.Labels, Label{l, infoLabels[l]})
		}
		out = append(out, s)
	}
	return out
}
