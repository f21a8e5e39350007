package scrape_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/adapter/scrape"
)

// TestRedisInfoTypes reads a real redis-server's INFO: cumulative fields are counters named
// _total, identity fields (ids, pids, ports, clocks) are not exposed as numbers.
func TestRedisInfoTypes(t *testing.T) {
	addr := startRedis(t)
	redisDo(t, addr, "SET a 1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	samples, err := (&scrape.RedisInfo{}).Probe(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]prometheus.ValueType{}
	for _, s := range samples {
		got[s.Name] = s.Type
		if s.Type == prometheus.CounterValue && !strings.HasSuffix(s.Name, "_total") {
			t.Errorf("counter %s does not end in _total", s.Name)
		}
		if s.Type == prometheus.GaugeValue && strings.HasSuffix(s.Name, "_total") {
			t.Errorf("gauge %s ends in _total", s.Name)
		}
	}
	for _, name := range []string{
		"redis_commands_processed_total", "redis_connections_received_total", "redis_net_input_bytes_total",
		"redis_net_repl_input_bytes_total", "redis_net_repl_output_bytes_total", "redis_forks_total",
		"redis_used_cpu_sys_seconds_total", "redis_used_cpu_user_seconds_total",
		"redis_used_cpu_sys_children_seconds_total", "redis_used_cpu_user_main_thread_seconds_total",
		"redis_expired_time_cap_reached_count_total", "redis_io_threaded_reads_processed_total",
		"redis_io_threaded_writes_processed_total", "redis_evicted_clients_total", "redis_evicted_keys_total",
		"redis_eviction_exceeded_time_total", "redis_active_defrag_time_total", "redis_keyspace_hits_total",
		"redis_reads_processed_total", "redis_error_replies_total",
	} {
		if typ, ok := got[name]; !ok || typ != prometheus.CounterValue {
			t.Errorf("%s: present %v, type %v, want a counter", name, ok, typ)
		}
	}
	for _, name := range []string{"redis_connected_clients", "redis_used_memory", "redis_system_memory",
		"redis_total_system_memory", "redis_uptime_in_seconds"} {
		if typ, ok := got[name]; ok && typ != prometheus.GaugeValue {
			t.Errorf("%s is a %v, want a gauge", name, typ)
		}
	}
	for _, name := range []string{"redis_total_system_memory", "redis_uptime_in_seconds", "redis_connected_clients"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s (a gauge) is missing", name)
		}
	}
	for _, name := range []string{"redis_git_sha1", "redis_master_replid2", "redis_process_id", "redis_tcp_port",
		"redis_lru_clock", "redis_total_commands_processed", "redis_used_cpu_sys"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s is exposed, want it left out", name)
		}
	}
}

// TestRedisInfoCurrentCounts: fields that count what is there now, which go down as well as
// up, are gauges, also when named total_* (Redis 7.2's clients section) or *_total; a gauge's
// name does not end in _total.
func TestRedisInfoCurrentCounts(t *testing.T) {
	got := map[string]prometheus.ValueType{}
	for _, s := range scrape.ParseRedisInfo("# Clients\r\ntotal_blocking_keys:2\r\ntotal_blocking_keys_on_nokey:1\r\n" +
		"total_watched_keys:3\r\n# Persistence\r\ncurrent_save_keys_processed:5\r\ncurrent_save_keys_total:9\r\n" +
		"# Stats\r\ntotal_commands_processed:7\r\n") {
		got[s.Name] = s.Type
	}
	want := map[string]prometheus.ValueType{
		"redis_total_blocking_keys": prometheus.GaugeValue, "redis_total_blocking_keys_on_nokey": prometheus.GaugeValue,
		"redis_total_watched_keys": prometheus.GaugeValue, "redis_current_save_keys_processed": prometheus.GaugeValue,
		"redis_current_save_keys": prometheus.GaugeValue, "redis_commands_processed_total": prometheus.CounterValue,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseRedisInfo names and types (-want +got):\n%s", diff)
	}
}

// TestRedisURL: a redis:// target may carry a password and a database; other URL parts are
// refused with a clear error.
func TestRedisURL(t *testing.T) {
	addr := startRedis(t, "--requirepass", "s3cret")
	redisDo(t, addr, "AUTH s3cret\r\nSELECT 3\r\nSET a 1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, target := range []string{"redis://:s3cret@" + addr, "redis://:s3cret@" + addr + "/0", "redis://default:s3cret@" + addr + "/3"} {
		if s, err := (&scrape.RedisInfo{}).Probe(ctx, target); err != nil || len(s) == 0 {
			t.Errorf("Probe(%q): %d samples, error %v", target, len(s), err)
		}
	}
	if _, err := (&scrape.RedisInfo{}).Probe(ctx, "redis://:wrong@"+addr); !errors.Is(err, scrape.ErrRedis) {
		t.Errorf("wrong password: error %v, want ErrRedis", err)
	}
	if _, err := (&scrape.RedisInfo{Password: "s3cret"}).Probe(ctx, "redis://"+addr+"/99"); !errors.Is(err, scrape.ErrRedis) {
		t.Errorf("database 99: error %v, want ErrRedis", err)
	}
	for _, target := range []string{"redis://" + addr + "/x", "redis://" + addr + "?db=1", "rediss://" + addr,
		"redis://" + addr + "/0/1", "redis://" + addr + "#f", "http://" + addr} {
		_, err := (&scrape.RedisInfo{Password: "s3cret"}).Probe(ctx, target)
		if !errors.Is(err, scrape.ErrRedisTarget) {
			t.Errorf("Probe(%q) error %v, want ErrRedisTarget", target, err)
		}
	}
}
