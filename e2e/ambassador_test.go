package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAmbassadorMemcache runs a pod of an app and examples/ambassador (nutcracker config, two
// memcached containers behind it); the app only talks to 127.0.0.1:22121. One memcached is killed:
// with auto_eject_hosts: false exactly its keys keep failing and the others keep hitting; with
// auto_eject_hosts: true its keys move to the survivor (misses, then sets and hits) while the
// survivor's keys keep their values.
func TestAmbassadorMemcache(t *testing.T) {
	needEngine(t, "ambassador", "memcached", "podtool")
	for _, eject := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto_eject_hosts=%v", eject), func(t *testing.T) { testAmbassadorEject(t, eject) })
	}
}

func testAmbassadorEject(t *testing.T, eject bool) {
	tag := fmt.Sprintf("amb%v-", eject)
	net := network(t, tag+"net")
	mcA := container(t, tag+"mc-a", "--network", net, image("memcached"))
	mcB := container(t, tag+"mc-b", "--network", net, "-p", "127.0.0.1::11211", image("memcached"))
	dir := t.TempDir()
	cfg := fmt.Sprintf(`cache:
  listen: 127.0.0.1:22121
  hash: md5
  distribution: ketama
  timeout: 500
  auto_eject_hosts: %v
  server_failure_limit: 2
  server_retry_timeout: 60000
  servers:
   - %s:11211:1 a
   - %s:11211:1 b
`, eject, mcA, mcB)
	if err := os.WriteFile(filepath.Join(dir, "nutcracker.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, join := pod(t, tag+"pod", "--network", net, "-p", "127.0.0.1::8000")
	container(t, tag+"ambassador", append(join, "-v", dir+":/etc/nutcracker:ro", image("ambassador"), "-c", "/etc/nutcracker/nutcracker.yml")...)
	container(t, tag+"app", append(join, image("podtool"), "mcapp", "-listen", ":8000", "-upstream", "127.0.0.1:22121")...)
	app := "http://" + hostAddr(t, prefix+tag+"pod", 8000)

	const n = 60
	key := func(i int) string { return fmt.Sprintf("key-%03d", i) }
	if err := eventually(60*time.Second, func() error {
		r := appDo(app, "set", key(0), "v0")
		if r.failed() || r.Reply != "STORED" {
			return fmt.Errorf("set through the ambassador: %+v", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r := appDo(app, "set", key(i), "v1-"+key(i)); r.Reply != "STORED" {
			t.Fatalf("set %s: %+v", key(i), r)
		}
	}
	// Which keys did the ambassador put on b? Ask b directly.
	onB := map[string]bool{}
	bAddr := hostAddr(t, mcB, 11211)
	for i := range n {
		v, err := memcacheGet(bAddr, key(i))
		if err != nil {
			t.Fatalf("get %s from b: %v", key(i), err)
		}
		if v != "" {
			onB[key(i)] = true
		}
	}
	if len(onB) < n/5 || len(onB) > n*4/5 {
		t.Fatalf("%d of %d keys on b: ketama over two equal servers should split them roughly evenly", len(onB), n)
	}

	mustDocker(t, "kill", mcB)
	t.Logf("killed b, which held %d of %d keys", len(onB), n)

	if !eject {
		// Three rounds: b's keys fail every time (it is never ejected, so they never move),
		// a's keys hit every time.
		for round := range 3 {
			for i := range n {
				k := key(i)
				r := appDo(app, "get", k, "")
				switch {
				case onB[k] && !r.failed():
					t.Errorf("round %d: get %s (on the dead b, no ejection): %+v, want an error", round, k, r)
				case !onB[k] && (r.failed() || r.Value != "v1-"+k):
					t.Errorf("round %d: get %s (on a): %+v, want v1-%s", round, k, r, k)
				}
			}
		}
		return
	}
	// Ejection: after server_failure_limit failures b is out; its keys land on a (miss, then a set
	// sticks); a's keys keep their values.
	err := eventually(60*time.Second, func() error {
		for i := range n {
			k := key(i)
			if !onB[k] {
				continue
			}
			r := appDo(app, "set", k, "v2-"+k)
			if r.failed() || r.Reply != "STORED" {
				return fmt.Errorf("set %s after the kill: %+v", k, r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := key(i)
		want := "v1-" + k
		if onB[k] {
			want = "v2-" + k
		}
		if r := appDo(app, "get", k, ""); r.failed() || r.Value != want {
			t.Errorf("get %s after ejection: %+v, want %s", k, r, want)
		}
	}
}

type appReply struct {
	Reply string `json:"reply"`
	Value string `json:"value"`
	Error string `json:"error"`
}

func (r appReply) failed() bool {
	return r.Error != "" || strings.HasPrefix(r.Reply, "SERVER_ERROR") || strings.HasPrefix(r.Reply, "ERROR") ||
		strings.HasPrefix(r.Reply, "CLIENT_ERROR")
}

// appDo asks the app (podtool mcapp) to run one memcache command through its ambassador.
func appDo(app, op, key, value string) appReply {
	code, _, body, err := get(app + "/" + op + "?key=" + url.QueryEscape(key) + "&value=" + url.QueryEscape(value))
	if err != nil {
		return appReply{Error: err.Error()}
	}
	var r appReply
	if err := json.Unmarshal(body, &r); err != nil || code != 200 {
		return appReply{Error: fmt.Sprintf("app answered %d %q", code, body)}
	}
	return r
}

// memcacheGet returns key's value on the memcached at addr ("" for a miss).
func memcacheGet(addr, key string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "get "+key+"\r\n"); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(line, "END") {
		return "", nil
	}
	var k string
	var flags, size int
	if _, err := fmt.Sscanf(line, "VALUE %s %d %d", &k, &flags, &size); err != nil {
		return "", fmt.Errorf("reply %q: %w", line, err)
	}
	buf := make([]byte, size+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	return string(buf[:size]), nil
}
