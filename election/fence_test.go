package election_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
)

func TestFenceCheck(t *testing.T) {
	var f election.Fence
	steps := []struct {
		token uint64
		stale bool
	}{{5, false}, {5, false}, {4, true}, {6, false}, {1, true}, {6, false}, {100, false}, {99, true}}
	for i, s := range steps {
		err := f.Check(s.token)
		if got := errors.Is(err, election.ErrStaleToken); got != s.stale {
			t.Fatalf("step %d: Check(%d) = %v, want stale=%v", i, s.token, err, s.stale)
		}
		var se *election.StaleTokenError
		if s.stale && (!errors.As(err, &se) || se.Token != s.token) {
			t.Fatalf("step %d: error %v is not a *StaleTokenError for %d", i, err, s.token)
		}
	}
	if f.Highest() != 100 {
		t.Fatalf("Highest = %d, want 100", f.Highest())
	}
	ran := false
	if err := f.Do(7, func() error { ran = true; return nil }); !errors.Is(err, election.ErrStaleToken) || ran {
		t.Fatalf("Do(stale) = %v, ran=%v; want ErrStaleToken and no run", err, ran)
	}
	boom := errors.New("boom")
	if err := f.Do(101, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Do(101) = %v, want the write's error", err)
	}
}

var parseTokenTests = []struct {
	in   string
	want uint64
	ok   bool
}{
	{"1", 1, true},
	{" 42 ", 42, true},
	{"18446744073709551615", 1<<64 - 1, true},
	{"", 0, false},
	{"0", 0, false},
	{"-1", 0, false},
	{"+1", 0, false},
	{"1.5", 0, false},
	{"0x10", 0, false},
	{"18446744073709551616", 0, false},
	{"abc", 0, false},
}

func TestParseToken(t *testing.T) {
	for _, tt := range parseTokenTests {
		got, err := election.ParseToken(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseToken(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, election.ErrNoToken) {
			t.Errorf("ParseToken(%q) error %v is not ErrNoToken", tt.in, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	for _, tt := range parseTokenTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := election.ParseToken(s)
		if err != nil {
			if tok != 0 || !errors.Is(err, election.ErrNoToken) {
				t.Fatalf("ParseToken(%q) = %d, %v", s, tok, err)
			}
			return
		}
		if tok == 0 {
			t.Fatalf("ParseToken(%q) accepted 0", s)
		}
		// A token that parses round-trips through its decimal form.
		again, err := election.ParseToken(strings.TrimSpace(s))
		if err != nil || again != tok {
			t.Fatalf("ParseToken(TrimSpace(%q)) = %d, %v; want %d", s, again, err, tok)
		}
	})
}

func TestFenceMiddleware(t *testing.T) {
	var f election.Fence
	var writes []string
	h := f.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writes = append(writes, r.Header.Get(election.TokenHeader))
		io.WriteString(w, "ok")
	}))
	tests := []struct {
		token string // "" means no header
		code  int
	}{
		{"", http.StatusBadRequest},
		{"x", http.StatusBadRequest},
		{"3", http.StatusOK},
		{"2", http.StatusConflict},
		{"3", http.StatusOK},
		{"10", http.StatusOK},
		{"9", http.StatusConflict},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPut, "/data", nil)
		if tt.token != "" {
			r.Header.Set(election.TokenHeader, tt.token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.code {
			t.Errorf("token %q: code %d, want %d (body %q)", tt.token, w.Code, tt.code, w.Body.String())
		}
		if w.Code >= 400 && strings.TrimSpace(w.Body.String()) == "" {
			t.Errorf("token %q: %d without a reason", tt.token, w.Code)
		}
	}
	if diff := cmp.Diff([]string{"3", "3", "10"}, writes); diff != "" {
		t.Fatalf("writes that reached the resource (-want +got):\n%s", diff)
	}
}
