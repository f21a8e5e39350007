package scrape

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// RedisInfo is the book's redis example as a scrape-and-transform probe: it connects to a redis
// server, sends INFO, and turns the reply into metrics:
//
//   - a cumulative field becomes a counter: redis_<field>_total, without a leading "total_" and
//     with "_seconds" for the used_cpu_* fields (total_commands_processed ->
//     redis_commands_processed_total, used_cpu_sys -> redis_used_cpu_sys_seconds_total,
//     keyspace_hits -> redis_keyspace_hits_total). Cumulative are the fields named total_*
//     (but total_system_memory and the current counts total_blocking_keys,
//     total_blocking_keys_on_nokey and total_watched_keys), used_cpu_*, evicted_* and
//     *_processed (but current_*), and the counts listed in the source (keyspace_misses,
//     expired_keys, sync_full, rdb_saves, ...);
//   - identity fields that happen to be numbers (process_id, tcp_port, lru_clock, run_id,
//     redis_git_sha1, redis_build_id, master_replid, master_replid2) are left out;
//   - every other numeric field becomes the gauge redis_<field> (uptime_in_seconds included),
//     without a trailing "_total" (current_save_keys_total -> redis_current_save_keys,
//     used_memory_vm_total -> redis_used_memory_vm);
//   - keyspace lines ("db0:keys=1,expires=0,avg_ttl=0") become redis_db_keys{db="db0"} and friends;
//   - redis_version, redis_mode, role and os become labels of redis_instance_info (value 1).
//
// A target is "host:port" or a URL "redis://[[user]:password@]host:port[/db]": the URL's
// password (and user) replace Password (and Username), and a database is selected with SELECT
// (INFO does not depend on it, but a database the server lacks fails the probe). Anything else
// in a URL (another scheme, a query, a fragment) fails with ErrRedisTarget.
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

// ErrRedisTarget is a target RedisInfo cannot read.
var ErrRedisTarget = errors.New("scrape: redis target must be host:port or redis://[[user]:password@]host:port[/db]")

// redisCounters are the cumulative INFO fields that redisCounter's rules do not catch.
var redisCounters = map[string]bool{
	"rejected_connections": true, "expired_keys": true, "keyspace_hits": true, "keyspace_misses": true,
	"sync_full": true, "sync_partial_ok": true, "sync_partial_err": true, "expired_time_cap_reached_count": true,
	"expire_cycle_cpu_milliseconds": true, "active_defrag_hits": true, "active_defrag_misses": true,
	"active_defrag_key_hits": true, "active_defrag_key_misses": true, "unexpected_error_replies": true,
	"dump_payload_sanitizations": true, "reply_buffer_shrinks": true, "reply_buffer_expands": true,
	"rdb_saves": true, "aof_rewrites": true, "lazyfreed_objects": true,
}

// redisIdentity are INFO fields that are numbers only by chance: ids, a pid, a port, a clock.
var redisIdentity = map[string]bool{
	"process_id": true, "tcp_port": true, "lru_clock": true, "run_id": true, "redis_git_sha1": true,
	"redis_build_id": true, "master_replid": true, "master_replid2": true,
}

// redisTotalGauges are the total_* INFO fields that are not cumulative: a size, and counts of
// what is there now (Redis 7.2's clients section), which go down as well as up.
var redisTotalGauges = map[string]bool{
	"total_system_memory": true, "total_blocking_keys": true, "total_blocking_keys_on_nokey": true,
	"total_watched_keys": true,
}

// redisMetric names the metric of INFO field k and tells whether it is a counter (see RedisInfo).
func redisMetric(k string) (string, prometheus.ValueType) {
	counter := redisCounters[k] ||
		(strings.HasPrefix(k, "total_") && !redisTotalGauges[k]) ||
		strings.HasPrefix(k, "used_cpu_") || strings.HasPrefix(k, "evicted_") ||
		(strings.HasSuffix(k, "_processed") && !strings.HasPrefix(k, "current_"))
	if !counter { // a gauge's name does not end in _total (current_save_keys_total)
		return "redis_" + strings.TrimSuffix(k, "_total"), prometheus.GaugeValue
	}
	name := "redis_" + strings.TrimPrefix(k, "total_")
	if strings.HasPrefix(k, "used_cpu_") {
		name += "_seconds"
	}
	return name + "_total", prometheus.CounterValue
}

// redisTarget is a parsed RedisInfo target.
type redisTarget struct {
	addr, username, password, db string
	auth                         bool
}

func parseRedisTarget(target string) (redisTarget, error) {
	if !strings.Contains(target, "://") {
		if strings.Contains(target, "@") { // a misspelt URL: a dial error would quote its password
			return redisTarget{}, fmt.Errorf("%w: an '@' in host:port", ErrRedisTarget)
		}
		return redisTarget{addr: target}, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return redisTarget{}, fmt.Errorf("%w: %w", ErrRedisTarget, targetURLError(target, err))
	}
	var t redisTarget
	switch {
	case u.User == nil && strings.Contains(target, "@"): // a password's unescaped '/', '?' or '#' ended the host early
		return t, fmt.Errorf("%w: %w", ErrRedisTarget, errUserInfo)
	case u.Scheme != "redis":
		return t, fmt.Errorf("%w: scheme %q", ErrRedisTarget, u.Scheme)
	case u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(target, "#"):
		return t, fmt.Errorf("%w: a query or fragment", ErrRedisTarget)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return t, fmt.Errorf("%w: %w", ErrRedisTarget, err)
	}
	t.addr = u.Host
	if u.User != nil {
		p, ok := u.User.Password()
		if !ok {
			return t, fmt.Errorf("%w: a user without a password", ErrRedisTarget)
		}
		t.username, t.password, t.auth = u.User.Username(), p, true
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return t, fmt.Errorf("%w: database %q", ErrRedisTarget, db)
		}
		t.db = db
	}
	return t, nil
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
	t, err := parseRedisTarget(target)
	if err != nil {
		return nil, err
	}
	if !t.auth {
		t.username, t.password = r.Username, r.Password
	}
	c, err := d.DialContext(ctx, "tcp", t.addr)
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
	if t.password != "" {
		args := []string{"AUTH", t.password}
		if t.username != "" {
			args = []string{"AUTH", t.username, t.password}
		}
		if _, err := redisCommand(c, br, args...); err != nil {
			return nil, err
		}
	}
	if t.db != "" {
		if _, err := redisCommand(c, br, "SELECT", t.db); err != nil {
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
		if err != nil || !labelNameRE.MatchString(k) || redisIdentity[k] {
			continue
		}
		name, t := redisMetric(k)
		out = append(out, Sample{Name: name, Help: "redis INFO field " + k + ".", Type: t, Value: f})
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
