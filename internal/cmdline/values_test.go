package cmdline_test

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/cmdline"
)

func TestList(t *testing.T) {
	for _, tc := range []struct {
		value string
		items []string
		err   string // "" for none; else the usage error's message
	}{
		{value: "", items: nil},
		{value: "a", items: []string{"a"}},
		{value: "a,b", items: []string{"a", "b"}},
		{value: "a, b", items: []string{"a", " b"}}, // items as they are: the caller trims if it wants
		{value: ",", err: `-watch ",": empty item in the comma-separated list`},
		{value: "a,,b", err: `-watch "a,,b": empty item in the comma-separated list`},
		{value: "a,", err: `-watch "a,": empty item in the comma-separated list`},
		{value: " ", err: `-watch " ": empty item in the comma-separated list`},
		{value: "a, ,b", err: `-watch "a, ,b": empty item in the comma-separated list`},
	} {
		items, err := cmdline.List("watch", tc.value)
		got, want := fmt.Sprintf("%q, status %d", items, cmdline.Status(err)), fmt.Sprintf("%q, status 0", tc.items)
		if tc.err != "" {
			got = fmt.Sprintf("%q, status %d, %v", items, cmdline.Status(err), err)
			want = fmt.Sprintf("[], status 2, %s", tc.err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List(watch, %q) (-want +got):\n%s", tc.value, diff)
		}
	}
}

func TestOnlyWith(t *testing.T) {
	parse := func(args ...string) *flag.FlagSet {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		fs.String("format", "json", "format")
		fs.String("regex", "", "regex")
		fs.String("state", "x", "state")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	for _, tc := range []struct {
		args []string
		ok   bool
		want string // "" for nil
	}{
		{args: nil, ok: false},                         // nothing given: its default is no choice
		{args: []string{"-regex", "x"}, ok: true},      // given where it means something
		{args: []string{"-format", "json"}, ok: false}, // another flag given
		{args: []string{"-regex", ""}, ok: false, want: "-regex: only with -format regex"},
		{args: []string{"-state", "x", "-regex", "y"}, ok: false, want: "-regex: only with -format regex"}, // the first of names
		{args: []string{"-state", "x"}, ok: false, want: "-state: only with -format regex"},
	} {
		err := cmdline.OnlyWith(parse(tc.args...), tc.ok, "-format regex", "regex", "state")
		got := ""
		if err != nil {
			got = fmt.Sprintf("status %d: %v", cmdline.Status(err), err)
		}
		want := ""
		if tc.want != "" {
			want = "status 2: " + tc.want
		}
		if got != want {
			t.Errorf("OnlyWith after %q, ok %v = %q, want %q", tc.args, tc.ok, got, want)
		}
	}
}
