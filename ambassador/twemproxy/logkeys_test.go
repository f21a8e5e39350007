package twemproxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// Every JSON log line has each key once: the pool's logger carries "pool", and the ejection's
// line added it again (a duplicate key, which JSON decoders keep the last of or reject).
func TestLogKeysUnique(t *testing.T) {
	var buf syncbuf.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)
	addr, _, _ := twemproxytest.StartPool(t, "r", true,
		"  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 30000\n",
		[]string{freeport.TCP(t)}, twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithLogger(zap.New(core)))
	c := dialResp(t, addr)
	if got := c.do(t, "GET", "k"); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("GET on a refused server: %q", got)
	}
	await.True(t, "the ejection's log line", 10*time.Second, func() bool {
		return strings.Contains(buf.String(), `"server ejected"`)
	})
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("log line is not a JSON object: %s", sc.Bytes())
		}
		seen := map[string]bool{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				t.Fatalf("log line %s: %v", sc.Bytes(), err)
			}
			if seen[key.(string)] {
				t.Errorf("key %q twice in log line %s", key, sc.Bytes())
			}
			seen[key.(string)] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("log line %s: %v", sc.Bytes(), err)
			}
		}
	}
}
