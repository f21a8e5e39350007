package ambassador_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/podblocks/podblocks/ambassador"
)

func ExampleHTTPProxy() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the backend, via %s\n", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()

	// The app's one local address; the ambassador balances over the endpoints.
	src := ambassador.NewStatic(ambassador.Endpoint{Addr: backend.Listener.Addr().String()})
	cluster, err := ambassador.NewCluster(src, ambassador.WithBalancer(ambassador.NewP2C))
	if err != nil {
		fmt.Println(err)
		return
	}
	proxy, err := ambassador.NewHTTPProxy("127.0.0.1:0", cluster, ambassador.WithRetries(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- proxy.Run(ctx) }()
	<-proxy.Ready()

	resp, err := http.Get("http://" + proxy.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))

	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// 200 hello from the backend, via http
	// run: <nil>
}

func ExampleNewMaglev() {
	eps := []ambassador.Endpoint{{Addr: "10.0.0.1:80"}, {Addr: "10.0.0.2:80"}, {Addr: "10.0.0.3:80"}}
	b := ambassador.NewMaglev(eps)
	key := ambassador.HashString("user-42")
	first := b.Pick(key)
	// The same key always lands on the same endpoint.
	fmt.Println(b.Pick(key) == first, ambassador.NewMaglev(eps).Pick(key) == first)
	// Output: true true
}
