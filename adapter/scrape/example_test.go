package scrape_test

import (
	"fmt"

	"github.com/podblocks/podblocks/adapter/scrape"
)

// Map a JSON document's values to metrics by path.
func ExampleJSONConfig_Extract() {
	cfg, err := scrape.ParseJSONConfig([]byte(`
metrics:
- name: app_queue
  type: object
  path: '{.queues[*]}'
  labels:
    queue: '{.name}'
  values:
    depth: '{.depth}'
`))
	if err != nil {
		panic(err)
	}
	doc, _ := scrape.DecodeJSON([]byte(`{"queues":[{"name":"email","depth":3},{"name":"sms","depth":0}]}`))
	for _, s := range cfg.Extract(doc) {
		fmt.Println(s.Name, s.Labels, s.Value)
	}
	// Output:
	// app_queue_depth [{queue email}] 3
	// app_queue_depth [{queue sms}] 0
}

func ExampleParseRedisInfo() {
	for _, s := range scrape.ParseRedisInfo("# Clients\r\nconnected_clients:2\r\n") {
		fmt.Println(s.Name, s.Value)
	}
	// Output: redis_connected_clients 2
}
