package redis_test

import (
	"bufio"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// TestEvalKeyCountLikeRedis: where the proxy answers a script command itself because of its key
// count, it gives the error that redis-server gives for the same command (redis runs a script
// with no keys, which the proxy cannot route: that one gets the proxy's own error, naming the
// command).
func TestEvalKeyCountLikeRedis(t *testing.T) {
	needRedis(t)
	c := dial(t, startRedis(t, 1)[0].Addr)
	sha := strings.Repeat("0", 40)
	p := &redis.Protocol{}
	for _, tc := range []struct {
		args []string
		want string // the proxy's reply, where it is not redis'
	}{
		{args: []string{"EVAL", "return 1", "3", "a", "b"}},
		{args: []string{"EVALSHA", sha, "3", "a", "b"}},
		{args: []string{"EVAL_RO", "return 1", "2", "a"}},
		{args: []string{"evalsha_ro", sha, "1"}},
		{args: []string{"EVAL", "return 1", "1000000000000000000", "a"}},
		{args: []string{"EVAL", "return 1", "-1", "a"}},
		{args: []string{"EVAL", "return 1", "x", "a"}},
		{args: []string{"EVAL", "return 1", "-0", "a"}},
		{args: []string{"EVAL", "return 1", "+1", "a"}},
		{args: []string{"EVAL", "return 1", "00", "a"}},
		{args: []string{"EVAL", "return 1", "99999999999999999999", "a"}},
		{args: []string{"EVAL", "return 1", "", "a"}},
		{args: []string{"EVALSHA", "abc", "3", "a"}}, // a short sha: redis' NOSCRIPT comes first
		{args: []string{"EVALSHA", "abc", "-1"}},
		{args: []string{"evalsha_ro", "abc", "x", "a"}},
		{args: []string{"EVALSHA", "abc", "0"}},
		{args: []string{"EVAL", "return 1", "0"}, want: "-ERR EVAL needs at least one key to be routed by the sharding proxy"},
		{args: []string{"evalsha", sha, "0", "x"}, want: "-ERR EVALSHA needs at least one key to be routed by the sharding proxy"},
		{args: []string{"Eval_Ro", "return 1", "0"}, want: "-ERR EVAL_RO needs at least one key to be routed by the sharding proxy"},
		{args: []string{"EVALSHA_RO", sha, "0"}, want: "-ERR EVALSHA_RO needs at least one key to be routed by the sharding proxy"},
	} {
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(encode(tc.args...))), &r); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !r.Local {
			t.Errorf("%q forwarded, want it answered by the proxy", tc.args)
			continue
		}
		want := tc.want
		if want == "" {
			want = c.must(t, tc.args...)
		}
		if diff := cmp.Diff(want+"\r\n", string(r.Resp)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.args, diff)
		}
	}
}
