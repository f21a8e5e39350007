package logs_test

import (
	"os"
	"time"

	"github.com/podblocks/podblocks/adapter/logs"
)

// Normalize an nginx access log line and a logfmt line into zap JSON.
func Example() {
	clock := logs.WithClock(func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) })
	access, _ := logs.New(logs.CommonLog{Combined: true}, os.Stdout, logs.WithStatic("source", "nginx"), clock)
	access.Line([]byte(`10.1.2.3 - - [02/Jan/2025:03:04:05 +0000] "GET /healthz HTTP/1.1" 404 9 "-" "kube-probe/1.31"`))

	app, _ := logs.New(logs.Logfmt{}, os.Stdout, logs.WithRename(map[string]string{"lvl": "level"}), clock)
	app.Line([]byte(`lvl=WARNING msg="cache miss" key=user:42`))
	// Output:
	// {"level":"warn","time":"2025-01-02T03:04:05Z","msg":"GET /healthz HTTP/1.1","remote_addr":"10.1.2.3","request":"GET /healthz HTTP/1.1","method":"GET","path":"/healthz","protocol":"HTTP/1.1","status":404,"bytes":9,"user_agent":"kube-probe/1.31","source":"nginx"}
	// {"level":"warn","time":"2025-01-02T03:04:05Z","msg":"cache miss","key":"user:42"}
}
