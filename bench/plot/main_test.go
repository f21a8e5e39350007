package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadRows(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    [][]string
		wantErr bool
	}{
		{"header skipped", "group,series,value\nrps,a,1\n", [][]string{{"rps", "a", "1"}}, false},
		{"no header", "rps,a,1\np99,a,2.5\n", [][]string{{"rps", "a", "1"}, {"p99", "a", "2.5"}}, false},
		{"header only", "series,ms\n", nil, true},
		{"empty", "", nil, true},
		{"bad quoting", "a,\"b\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readRows(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadTable(t *testing.T) {
	got, err := readTable([][]string{{"rps", "haproxy", "8238"}, {"rps", "podblocks", "15393"}, {"p99 ms", "podblocks", "535.14"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"rps", "p99 ms"}, got.groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"haproxy", "podblocks"}, got.series); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	if v, s := got.vals[[2]string{"p99 ms", "podblocks"}], got.texts[[2]string{"p99 ms", "podblocks"}]; v != 535.14 || s != "535.14" {
		t.Errorf("p99 podblocks = %v %q, want 535.14 \"535.14\"", v, s)
	}

	bad := []struct {
		name string
		rows [][]string
		want string
	}{
		{"two fields", [][]string{{"rps", "1"}}, "want group,series,value"},
		{"not a number", [][]string{{"rps", "a", "fast"}}, "invalid syntax"},
		{"duplicate", [][]string{{"rps", "a", "1"}, {"rps", "a", "2"}}, "second value"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readTable(tt.rows)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNinesTicks(t *testing.T) {
	var got []string
	for _, tk := range (ninesTicks{}).Ticks(0, 3) {
		if tk.Label != "" {
			got = append(got, tk.Label)
		}
	}
	if diff := cmp.Diff([]string{"p0", "p90", "p99", "p99.9"}, got); diff != "" {
		t.Errorf("major tick labels (-want +got):\n%s", diff)
	}
}

func TestPlainTicks(t *testing.T) {
	for _, tk := range (plainTicks{}).Ticks(0, 28000) {
		if strings.Contains(tk.Label, ".") {
			t.Errorf("label %q for %v: want no decimals", tk.Label, tk.Value)
		}
	}
}

// renderCSV writes a CSV to a temp dir, runs the command on it and returns the SVG.
func renderCSV(t *testing.T, kind, csv string, flags ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.svg")
	if err := os.WriteFile(in, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(append([]string{kind, "-in", in, "-out", out}, flags...)); err != nil {
		return "", err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func TestRun(t *testing.T) {
	tests := []struct {
		name, kind, csv string
		flags           []string
		want            []string // texts the SVG must contain
	}{
		{
			name:  "bars label every bar with its CSV text",
			kind:  "bars",
			csv:   "group,series,value\nreq/s,haproxy,8238\nreq/s,podblocks,15393\np99 ms,haproxy,235.52\np99 ms,podblocks,535.14\n",
			flags: []string{"-title", "ambassador HTTP"},
			want:  []string{"ambassador HTTP", "req/s", "p99 ms", ">8238<", ">15393<", ">235.52<", ">535.14<", ">haproxy<", ">podblocks<"},
		},
		{
			name:  "grouped",
			kind:  "grouped",
			csv:   "100000,statsd_exporter,99983\n100000,podblocks,99977\nmax,statsd_exporter,161941\nmax,podblocks,1215384\n",
			flags: []string{"-x", "lines sent per second", "-y", "lines processed/s"},
			want:  []string{"lines sent per second", "lines processed/s", ">max<", ">1215384<", ">99977<", ">statsd_exporter<"},
		},
		{
			name:  "cdf with tail tile",
			kind:  "cdf",
			csv:   "series,ms\npodblocks resign,1\npodblocks resign,2\npodblocks resign,7\netcd resign,98\netcd resign,117\n",
			flags: []string{"-x", "ms", "-tail"},
			want:  []string{"podblocks resign (n=3)", "etcd resign (n=2)", "tail: y axis in nines", ">p90<"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg, err := renderCSV(t, tt.kind, tt.csv, tt.flags...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(svg, w) {
					t.Errorf("SVG lacks %q", w)
				}
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name, kind, csv, want string
	}{
		{"unknown kind", "pie", "a,b,1\n", "unknown chart"},
		{"grouped missing a value", "grouped", "g1,a,1\ng1,b,2\ng2,a,3\n", `group "g2" has no value for series "b"`},
		{"cdf with three fields", "cdf", "a,b,1\n", "want series,value"},
		{"bars not finite", "bars", "g,a,NaN\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderCSV(t, tt.kind, tt.csv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if err := run([]string{"bars", "-in", "x.csv"}); err == nil {
		t.Error("run without -out: no error")
	}
}

// FuzzCharts feeds arbitrary CSV to every chart kind and draws the result: a bad file must give an
// error, never a panic.
func FuzzCharts(f *testing.F) {
	f.Add("group,series,value\nreq/s,haproxy,8238\nreq/s,podblocks,15393\np99 ms,podblocks,535.14\n")
	f.Add("100000,statsd_exporter,99983\n100000,podblocks,99977\n")
	f.Add("series,ms\npodblocks resign,1\netcd resign,98\n")
	f.Add("g,a,-1\ng,b,0\n")
	f.Add("a,0\na,-5\n")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := readRows(strings.NewReader(in))
		if err != nil {
			return
		}
		draws := func(plots []*plot.Plot) {
			c := vgsvg.New(4*vg.Inch, 3*vg.Inch)
			for _, p := range plots {
				p.Draw(draw.New(c))
			}
		}
		if ps, _, err := bars(rows, "y"); err == nil {
			draws(ps)
		}
		if p, _, err := grouped(rows); err == nil {
			draws([]*plot.Plot{p})
		}
		if samples, order, err := readSamples(rows); err == nil {
			for _, nines := range []bool{false, true} {
				p := plot.New()
				if _, err := cdf(p, samples, order, nines); err == nil {
					draws([]*plot.Plot{p})
				}
			}
		}
	})
}
