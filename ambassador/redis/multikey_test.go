package redis_test

import (
	"crypto/sha1"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// multiKeyPool is the pool of TestMultiKeyCommands, for podblocks and nutcracker alike.
const multiKeyPool = "  hash: murmur\n  distribution: ketama\n  hash_tag: \"{}\"\n"

// keyStep is a command of TestMultiKeyCommands and its reply. nc says why nutcracker answers
// otherwise ("": it answers the same); such a step is sent to nutcracker only if ncWant, its
// reply there, is set.
type keyStep struct {
	args   []string
	want   string
	prefix bool // want is the start of the reply
	nc     string
	ncWant string
}

// multiKeySteps has the keys of each command on one server (tag tg), except where the step
// says so (tag other, on another server, which is also where the key "2" goes).
func multiKeySteps(tg, other string) []keyStep {
	k := func(name string) string { return "{" + tg + "}" + name }
	o := func(name string) string { return "{" + other + "}" + name }
	script := "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])"
	sum := sha1.Sum([]byte(script))
	sha := hex.EncodeToString(sum[:])
	const numkeys = "nutcracker routes it by its numkeys argument, \"2\", which is on the other server"
	const spread = "nutcracker runs it on the first key's server"
	spreadErr := func(cmd string) string {
		return "-ERR keys of '" + cmd + "' are on different servers; use hash_tag to keep them on one"
	}
	return []keyStep{
		{args: []string{"SADD", k("s1"), "a", "b", "c"}, want: ":3"},
		{args: []string{"SADD", k("s2"), "b", "c", "d"}, want: ":3"},
		{args: []string{"SDIFF", k("s2"), k("s1")}, want: "[$d]"},
		{args: []string{"SDIFFSTORE", k("sd"), k("s1"), k("s2")}, want: ":1"},
		{args: []string{"SINTER", k("s1"), k("sd")}, want: "[$a]"},
		{args: []string{"SINTERSTORE", k("si"), k("s1"), k("s2")}, want: ":2"},
		{args: []string{"SUNION", k("sd"), k("nope")}, want: "[$a]"},
		{args: []string{"SUNIONSTORE", k("su"), k("s1"), k("s2")}, want: ":4"},
		{args: []string{"SMOVE", k("s1"), k("s2"), "a"}, want: ":1"},
		{args: []string{"SCARD", k("s2")}, want: ":4"},
		{args: []string{"RPUSH", k("l"), "x", "y"}, want: ":2"},
		{args: []string{"RPOPLPUSH", k("l"), k("m")}, want: "$y"},
		{args: []string{"LMOVE", k("l"), k("m"), "LEFT", "RIGHT"}, want: "$x"},
		{args: []string{"COPY", k("m"), k("m2")}, want: ":1"},
		{args: []string{"LRANGE", k("m2"), "0", "-1"}, want: "[$y $x]"},
		{args: []string{"SORT", k("m2"), "ALPHA", "STORE", k("sorted")}, want: ":2"},
		{args: []string{"LRANGE", k("sorted"), "0", "-1"}, want: "[$x $y]"},
		{args: []string{"PFADD", k("h1"), "a", "b"}, want: ":1"},
		{args: []string{"PFADD", k("h2"), "b", "c"}, want: ":1"},
		{args: []string{"PFCOUNT", k("h1"), k("h2")}, want: ":3"},
		{args: []string{"PFMERGE", k("h3"), k("h1"), k("h2")}, want: "+OK"},
		{args: []string{"PFCOUNT", k("h3")}, want: ":3"},
		{args: []string{"ZADD", k("z1"), "1", "a", "2", "b"}, want: ":2"},
		{args: []string{"ZADD", k("z2"), "3", "b", "4", "c"}, want: ":2"},
		{args: []string{"ZUNIONSTORE", k("zu"), "2", k("z1"), k("z2"), "WEIGHTS", "1", "2"}, want: ":3"},
		{args: []string{"ZINTERSTORE", k("zi"), "2", k("z1"), k("z2")}, want: ":1"},
		{args: []string{"ZDIFFSTORE", k("zd"), "2", k("z1"), k("z2")}, want: ":1"},
		{args: []string{"ZRANGESTORE", k("zr"), k("zu"), "0", "0"}, want: ":1"},
		{args: []string{"ZRANGE", k("zr"), "0", "-1"}, want: "[$a]"},
		{args: []string{"ZUNION", "2", k("z1"), k("z2")}, want: "[$a $c $b]", nc: numkeys, ncWant: "[]"},
		{args: []string{"ZINTER", "2", k("z1"), k("z2")}, want: "[$b]", nc: numkeys, ncWant: "[]"},
		{args: []string{"ZDIFF", "2", k("z1"), k("z2")}, want: "[$a]", nc: numkeys, ncWant: "[]"},
		{args: []string{"GEOADD", k("g"), "13.361389", "38.115556", "Palermo"}, want: ":1"},
		{args: []string{"GEOSEARCHSTORE", k("gs"), k("g"), "FROMLONLAT", "13.36", "38.11", "BYRADIUS", "10", "km"}, want: ":1"},
		{args: []string{"GEORADIUS", k("g"), "13.36", "38.11", "10", "km", "STORE", k("gr")}, want: ":1"},
		{args: []string{"SET", k("k1"), "a"}, want: "+OK"},
		{args: []string{"SET", k("k2"), "b"}, want: "+OK"},
		{args: []string{"EVAL", script, "2", k("k1"), k("k2")}, want: "$ab"},
		{args: []string{"EVALSHA", sha, "2", k("k1"), k("k2")}, want: "$ab"},
		{args: []string{"BITFIELD", k("bf"), "SET", "u8", "0", "255"}, want: "[:0]"},
		{args: []string{"COMMAND"}, want: "[[$", prefix: true, nc: "nutcracker may ask another server, which lists the commands in another order"},
		{args: []string{"LOLWUT"}, want: "$Redis ver.", prefix: true},
		// Keys on different servers: refused, and nothing is run.
		{args: []string{"SUNION", k("s1"), o("s")}, want: spreadErr("sunion"), nc: spread},
		{args: []string{"smove", o("s"), k("s2"), "b"}, want: spreadErr("smove"), nc: spread},
		{args: []string{"EVAL", script, "2", k("k1"), o("k2")}, want: spreadErr("eval"), nc: spread},
		{args: []string{"ZUNIONSTORE", k("d"), "2", k("z1"), o("z")}, want: spreadErr("zunionstore"), nc: spread},
		{args: []string{"ZUNION", "2", k("z1"), o("z")}, want: spreadErr("zunion"), nc: spread},
		{args: []string{"SORT", k("m2"), "ALPHA", "STORE", o("d")}, want: spreadErr("sort"), nc: spread},
		{args: []string{"GEORADIUS", k("g"), "13.36", "38.11", "10", "km", "STOREDIST", o("d")}, want: spreadErr("georadius"), nc: spread},
		{args: []string{"EXISTS", k("d"), o("d")}, want: ":0"},
		{args: []string{"SCARD", k("s2")}, want: ":4"},
	}
}

// runSteps sends the steps (those nutcracker answers the same, if forNutcracker) to addr in
// order and returns the replies.
func runSteps(t *testing.T, addr string, steps []keyStep, forNutcracker bool) []string {
	t.Helper()
	c := dial(t, addr)
	var got []string
	for _, s := range steps {
		if forNutcracker && s.nc != "" && s.ncWant == "" {
			got = append(got, "")
			continue
		}
		got = append(got, c.must(t, s.args...))
	}
	return got
}

// TestMultiKeyCommands: the commands with several keys that nutcracker forwards run through the
// proxy on real servers when their keys share a server (hash_tag), with nutcracker's replies;
// keys on different servers get an error and nothing runs.
func TestMultiKeyCommands(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 2)
	addr, _, pc := startProxy(t, multiKeyPool, backends, &redis.Protocol{})
	pl := twemproxy.NewPlacer(pc, nil)
	two := pl.Place([]byte("2"))
	var tg, other string
	for i := 0; tg == "" || other == ""; i++ {
		tag := strconv.Itoa(i)
		switch {
		case pl.Place([]byte("{"+tag+"}")) != two:
			tg = tag
		case other == "":
			other = tag
		}
	}
	steps := multiKeySteps(tg, other)
	got := runSteps(t, addr, steps, false)
	for i, s := range steps {
		if s.prefix && strings.HasPrefix(got[i], s.want) {
			continue
		}
		if diff := cmp.Diff(s.want, got[i]); diff != "" {
			t.Errorf("%.80q (-want +got):\n%s", s.args, diff)
		}
	}

	t.Run("nutcracker", func(t *testing.T) {
		if !shardproc.Have(shardproc.NutcrackerPath) {
			t.Skipf("%s is not installed (Debian package nutcracker): replies not compared with nutcracker's", shardproc.NutcrackerPath)
		}
		for _, b := range backends {
			if r := dial(t, b.Addr).must(t, "FLUSHALL"); r != "+OK" {
				t.Fatalf("FLUSHALL: %s", r)
			}
		}
		ncAddr := startNutcracker(t, multiKeyPool, backends)
		ncGot := runSteps(t, ncAddr, steps, true)
		compared := 0
		for i, s := range steps {
			if s.ncWant != "" && ncGot[i] != s.ncWant {
				t.Errorf("%.80q: nutcracker answered %q, want %q (%s)", s.args, ncGot[i], s.ncWant, s.nc)
			}
			if s.nc != "" {
				continue
			}
			compared++
			if diff := cmp.Diff(ncGot[i], got[i]); diff != "" {
				t.Errorf("%.80q (-nutcracker +podblocks):\n%s", s.args, diff)
			}
		}
		t.Logf("%d of %d replies compared with nutcracker's", compared, len(steps))
	})
}

// startNutcracker serves one redis pool over backends with nutcracker, with the pool lines that
// startProxy gets, and returns its address.
func startNutcracker(t *testing.T, extra string, backends []*shardproc.Proc) string {
	t.Helper()
	return twemproxytest.StartNutcracker(t, "r", true, extra, procAddrs(backends))
}

// TestArityNoStricterThanRedis: the proxy asks no command for more arguments than redis does,
// so that it refuses nothing that redis (and nutcracker) would run.
func TestArityNoStricterThanRedis(t *testing.T) {
	needRedis(t)
	c := dial(t, startRedis(t, 1)[0].Addr)
	arity := regexp.MustCompile(`^\[\[\$[a-z_]+ :(-?\d+) `)
	for name, min := range redis.Arities() {
		info := c.must(t, "COMMAND", "INFO", name)
		m := arity.FindStringSubmatch(info)
		if m == nil {
			t.Errorf("COMMAND INFO %s: %.80q", name, info)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if max(n, -n) < min {
			t.Errorf("%s: the proxy wants at least %d arguments, redis %d", name, min, max(n, -n))
		}
	}
}

// Under random distribution a key has no server of its own: a command that needs its keys together
// goes whole to one server, as nutcracker sends it, instead of being refused whenever two of its keys
// were placed apart.
func TestMultiKeyCommandsRandomDistribution(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 2)
	addr, _, _ := startProxy(t, "  hash: murmur\n  distribution: random\n", backends, &redis.Protocol{})
	c := dial(t, addr)
	for i := range 20 {
		for _, s := range []keyStep{
			{args: []string{"RPOPLPUSH", "l", "l"}, want: "nil"},
			{args: []string{"PFCOUNT", "h", "h"}, want: ":0"},
			{args: []string{"EVAL", "return #KEYS", "2", "a", "b"}, want: ":2"},
			{args: []string{"SUNIONSTORE", "d", "s1", "s2"}, want: ":0"},
		} {
			if got := c.must(t, s.args...); got != s.want {
				t.Fatalf("try %d: %q answered %q, want %q", i, s.args, got, s.want)
			}
		}
	}
}
