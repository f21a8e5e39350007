package workqueue_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// TestClientDeadStopsEndlessPages: a broken server whose every page of dead letters links to the
// next one, one dead letter on, forever, gets an error from Dead(-1) saying how many pages it
// followed, rather than a Dead that never returns.
func TestClientDeadStopsEndlessPages(t *testing.T) {
	_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("from"))
		w.Header().Set("Link", fmt.Sprintf("<%sdead?from=%d&max=1>; rel=\"next\"", workqueue.APIPrefix, from+1))
		fmt.Fprintf(w, `[{"id":"d%d","payload":"eA==","reason":"r"}]`, from)
	}))
	ctx, cancel := context.WithTimeout(bg(t), 60*time.Second)
	defer cancel()
	d, err := cl.Dead(ctx, -1)
	if err == nil || !strings.Contains(err.Error(), "pages") || ctx.Err() != nil {
		t.Fatalf("Dead(-1) of endless pages: %d dead letters, %v; want an error saying it stopped after its most pages", len(d), err)
	}
}
