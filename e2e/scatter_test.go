package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestScatterLeafPaused runs a scatter root and three leaf containers; one leaf is paused (frozen:
// its connections stay open and silent, the worst case for a fan-out); the root still answers within
// its deadline, with the coverage headers saying 2 of 3 shards; after the leaf resumes, coverage is
// full again.
func TestScatterLeafPaused(t *testing.T) {
	needEngine(t, "scatter")
	const deadline = 300 * time.Millisecond
	net := network(t, "scatter")
	var leaves, names []string
	for i := range 3 {
		l := container(t, fmt.Sprintf("leaf-%d", i), "--network", net, image("scatter"),
			"leaf", "-listen", "0.0.0.0:9100", "-shard", fmt.Sprint(i), "-shards", "3", "-docs", "3000")
		leaves = append(leaves, "http://"+l+":9100/search")
		names = append(names, l)
	}
	root := container(t, "root", "--network", net, "-p", "127.0.0.1::9000", image("scatter"),
		"root", "-listen", "0.0.0.0:9000", "-leaves", strings.Join(leaves, ","), "-timeout", deadline.String(),
		"-hedge-delay", "0", "-hedge-percentile", "0")
	url := "http://" + hostAddr(t, root, 9000) + "/search?k=5&q=a+e+o"

	type answer struct {
		elapsed  time.Duration
		coverage string
		answered string
		shards   string
		statuses string
	}
	query := func() (answer, error) {
		start := time.Now()
		code, h, body, err := get(url)
		a := answer{elapsed: time.Since(start)}
		if err != nil {
			return a, err
		}
		if code != http.StatusOK {
			return a, fmt.Errorf("GET /search: %d %s", code, body)
		}
		var hits []json.RawMessage
		if err := json.Unmarshal(body, &hits); err != nil {
			return a, fmt.Errorf("GET /search: body %q: %v", body, err)
		}
		a.coverage, a.answered, a.shards, a.statuses = h.Get("X-Scatter-Coverage"), h.Get("X-Scatter-Answered"), h.Get("X-Scatter-Shards"), h.Get("X-Scatter-Statuses")
		return a, nil
	}
	full := func() error {
		a, err := query()
		if err != nil {
			return err
		}
		if a.coverage != "1.000" || a.answered != "3" || a.shards != "3" {
			return fmt.Errorf("coverage %s (%s of %s shards, %s), want all 3", a.coverage, a.answered, a.shards, a.statuses)
		}
		return nil
	}
	if err := eventually(60*time.Second, full); err != nil {
		t.Fatalf("before the pause: %v", err)
	}

	mustDocker(t, "pause", names[1])
	// Under load the engine may take a moment to freeze the leaf: the first partial answer counts.
	var partial answer
	err := eventually(30*time.Second, func() error {
		a, err := query()
		if err != nil {
			return err
		}
		if a.coverage == "1.000" {
			return errNotYet
		}
		partial = a
		return nil
	})
	if err != nil {
		t.Fatalf("the root never answered without the paused leaf: %v", err)
	}
	// Then every answer: partial, within the deadline (plus slack for a busy two-core machine).
	const slack = 1500 * time.Millisecond
	for i := range 5 {
		a, err := query()
		if err != nil {
			t.Fatalf("query %d with a paused leaf: %v", i, err)
		}
		if a.coverage != "0.667" || a.answered != "2" || a.shards != "3" {
			t.Errorf("query %d: coverage %s (%s of %s shards, statuses %s), want 0.667 (2 of 3)", i, a.coverage, a.answered, a.shards, a.statuses)
		}
		if a.elapsed > deadline+slack {
			t.Errorf("query %d took %v with a paused leaf, want within the %v deadline (+%v slack)", i, a.elapsed, deadline, slack)
		}
		if a.elapsed < deadline/2 {
			t.Errorf("query %d took %v: the paused leaf cannot have been waited for", i, a.elapsed)
		}
		partial = a
	}
	t.Logf("with leaf 1 paused: coverage %s (%s of %s), statuses %s, %v", partial.coverage, partial.answered, partial.shards, partial.statuses, partial.elapsed)

	mustDocker(t, "unpause", names[1])
	if err := eventually(60*time.Second, full); err != nil {
		t.Fatalf("after the resume: %v", err)
	}
}
