package main

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
)

// TestEnqueueRefusesOversizedStdin: a payload on stdin larger than enqueue's limit is refused with
// a reason that says so, and nothing is added; it is not cut to the limit and added.
func TestEnqueueRefusesOversizedStdin(t *testing.T) {
	m, err := workqueue.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	api, err := workqueue.NewAPI(m, workqueue.WithMaxPayload(100<<20))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	in := io.MultiReader(bytes.NewReader(make([]byte, maxStdin)), strings.NewReader("y"))
	var out, errb bytes.Buffer
	err = run([]string{"enqueue", "-server", srv.URL}, in, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "enqueue: stdin holds more than 67108864 bytes") {
		t.Errorf("enqueue of %d bytes: %v (stdout %q); want an error naming the limit", maxStdin+1, err, out.String())
	}
	if st, err := m.Stats(context.Background()); err != nil || st.Depth() != 0 {
		t.Errorf("after an oversized enqueue: stats %+v, %v; want nothing added", st, err)
	}
}
