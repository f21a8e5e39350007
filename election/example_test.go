package election_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/podblocks/podblocks/election"
)

// An Elector runs the leader func for each term it wins and waits for it when the term ends.
func ExampleElector() {
	backend := election.NewMemory() // or etcd.New(client, "my-election", etcd.WithTTL(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	e, err := election.New(backend, "pod-a", func(leaderCtx context.Context, t election.Term) error {
		fmt.Printf("leading as %s with token %d\n", t.ID, t.Token)
		cancel() // for the example: stop after the first term
		<-leaderCtx.Done()
		fmt.Println("stepped down")
		return nil
	})
	if err != nil {
		panic(err)
	}
	if err := e.Run(ctx); err != nil {
		panic(err)
	}
	// Output:
	// leading as pod-a with token 1
	// stepped down
}

// Observe reports the leader as it changes, until Run returns. It may be called before Run has
// started, as here right after go e.Run(ctx): the channel stays open and Run serves it.
func ExampleElector_Observe() {
	ctx, cancel := context.WithCancel(context.Background())
	e, err := election.New(election.NewMemory(), "pod-a", func(leaderCtx context.Context, _ election.Term) error {
		<-leaderCtx.Done()
		return nil
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	for l := range e.Observe(ctx) { // the zero Leader first: not known yet
		if l.Self {
			fmt.Printf("%s leads with token %d\n", l.ID, l.Token)
			cancel() // for the example: stop once this candidate leads
		}
	}
	cancel()
	fmt.Println("channel closed; Run returned", <-done)
	// Output:
	// pod-a leads with token 1
	// channel closed; Run returned <nil>
}

// A resource guarded by a Fence rejects writes from a term older than one it has seen.
func ExampleFence() {
	var f election.Fence
	write := func(token uint64) {
		err := f.Do(token, func() error { return nil /* the write */ })
		fmt.Printf("token %d: %v\n", token, err)
	}
	write(7)
	write(9)
	write(7) // a leader from an old term woke up late
	// Output:
	// token 7: <nil>
	// token 9: <nil>
	// token 7: election: stale fencing token 7 (highest accepted 9)
}

// The middleware form reads the token from the Fencing-Token header.
func ExampleFence_Middleware() {
	var f election.Fence
	h := f.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "stored")
	}))
	for _, token := range []string{"12", "11"} {
		r := httptest.NewRequest(http.MethodPut, "/data", nil)
		r.Header.Set(election.TokenHeader, token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(token, w.Code, strings.TrimSpace(w.Body.String()))
	}
	// Output:
	// 12 200 stored
	// 11 409 election: stale fencing token 11 (highest accepted 12)
}
