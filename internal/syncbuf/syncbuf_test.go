package syncbuf

import (
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConcurrentWritesAndReads: every write lands whole while readers take snapshots (run with -race).
func TestConcurrentWritesAndReads(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("ab\n"))
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				_ = b.Bytes()
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got, want := b.String(), strings.Repeat("ab\n", 400); got != want {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	snap := b.Bytes()
	snap[0] = 'x'
	if b.String()[0] != 'a' {
		t.Fatal("Bytes returned the buffer's own memory, not a copy")
	}
}
