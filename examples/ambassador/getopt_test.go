package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parsed is a getoptLong result in comparable words: each option as its long name, with
// "=value" when it takes one; the operands; and what was refused, or "".
type parsed struct {
	Opts     []string
	Operands []string
	Err      string
}

func getopt(args []string, specs []optSpec, permute bool) parsed {
	opts, operands, err := getoptLong(args, specs, permute)
	var p parsed
	for _, o := range opts {
		s := o.spec.long
		if o.spec.hasArg {
			s += "=" + o.value
		}
		p.Opts = append(p.Opts, s)
	}
	p.Operands = operands
	if err != nil {
		p.Err = fmt.Sprintf("opt %q", err.opt)
		if err.spec != nil {
			p.Err += " of --" + err.spec.long
		}
		if err.missing {
			p.Err += " missing"
		}
		if err.name != "" || err.spec == nil {
			p.Err += fmt.Sprintf(" name %q", err.name)
		}
		if err.ambiguous != nil {
			p.Err += " ambiguous " + strings.Join(err.ambiguous, " ")
		}
	}
	return p
}

// getoptCases are command lines for nutcrackerOptions and what getoptLong makes of them, with
// permutation; the posix cases are read with POSIXLY_CORRECT.
var getoptCases = []struct {
	args  []string
	posix bool
	want  parsed
}{
	{args: nil, want: parsed{}},
	{args: []string{"-t", "-c", "a.yml"}, want: parsed{Opts: []string{"test-conf", "conf-file=a.yml"}}},
	{args: []string{"-tc", "a.yml"}, want: parsed{Opts: []string{"test-conf", "conf-file=a.yml"}}},
	{args: []string{"-tca.yml"}, want: parsed{Opts: []string{"test-conf", "conf-file=a.yml"}}},
	{args: []string{"-dtVh"}, want: parsed{Opts: []string{"daemonize", "test-conf", "version", "help"}}},
	{args: []string{"-c", "-t"}, want: parsed{Opts: []string{"conf-file=-t"}}},
	{args: []string{"-c", "--"}, want: parsed{Opts: []string{"conf-file=--"}}},
	{args: []string{"-c", ""}, want: parsed{Opts: []string{"conf-file="}}},
	{args: []string{"-tc"}, want: parsed{Opts: []string{"test-conf"}, Err: `opt 'c' of --conf-file missing name "conf-file"`}},
	{args: []string{"-s22223", "-v7", "-m=1"}, want: parsed{Opts: []string{"stats-port=22223", "verbose=7", "mbuf-size==1"}}},
	{args: []string{"--conf-file=a", "--conf-file", "b", "--conf-file="},
		want: parsed{Opts: []string{"conf-file=a", "conf-file=b", "conf-file="}}},
	{args: []string{"--conf=a", "--c", "b", "--test", "--te", "--h", "--de", "--m=512"},
		want: parsed{Opts: []string{"conf-file=a", "conf-file=b", "test-conf", "test-conf", "help", "describe-stats", "mbuf-size=512"}}},
	{args: []string{"--conf=a=b"}, want: parsed{Opts: []string{"conf-file=a=b"}}},
	{args: []string{"--s=1"}, want: parsed{Err: `opt '\x00' name "s" ambiguous --stats-port --stats-interval --stats-addr`}},
	{args: []string{"-t", "--bogus", "-x"}, want: parsed{Opts: []string{"test-conf"}, Err: `opt '\x00' name "bogus"`}},
	{args: []string{"---"}, want: parsed{Err: `opt '\x00' name "-"`}},
	{args: []string{"--test-conf=yes"}, want: parsed{Err: `opt 't' of --test-conf name "test-conf"`}},
	{args: []string{"--te=yes"}, want: parsed{Err: `opt 't' of --test-conf name "te"`}},
	{args: []string{"--conf"}, want: parsed{Err: `opt 'c' of --conf-file missing name "conf-file"`}},
	{args: []string{"-x"}, want: parsed{Err: `opt 'x' name ""`}},
	{args: []string{"-t="}, want: parsed{Opts: []string{"test-conf"}, Err: `opt '=' name ""`}},
	{args: []string{"-?"}, want: parsed{Err: `opt '?' name ""`}},
	{args: []string{"-:"}, want: parsed{Err: `opt ':' name ""`}},
	{args: []string{"-conf-file", "a"}, want: parsed{Opts: []string{"conf-file=onf-file"}, Operands: []string{"a"}}},
	{args: []string{"-help"}, want: parsed{Opts: []string{"help"}, Err: `opt 'e' name ""`}},
	// Operands, permutation, POSIXLY_CORRECT and "--".
	{args: []string{"a", "-t", "", "-", "b", "-c", "x"},
		want: parsed{Opts: []string{"test-conf", "conf-file=x"}, Operands: []string{"a", "", "-", "b"}}},
	{args: []string{"-t", "a", "-c", "x"}, posix: true, want: parsed{Opts: []string{"test-conf"}, Operands: []string{"a", "-c", "x"}}},
	{args: []string{"-t", "--", "-c", "x", "--"}, want: parsed{Opts: []string{"test-conf"}, Operands: []string{"-c", "x", "--"}}},
	{args: []string{"a", "--", "-c"}, want: parsed{Operands: []string{"a", "-c"}}},
	{args: []string{"a", "-x", "b"}, want: parsed{Operands: []string{"a"}, Err: `opt 'x' name ""`}},
	// podblocks' own --metrics: spelled out in full, with one dash or two.
	{args: []string{"-metrics", "a", "-metrics=b", "--metrics", "c", "--metrics=d", "-metrics="},
		want: parsed{Opts: []string{"metrics=a", "metrics=b", "metrics=c", "metrics=d", "metrics="}}},
	{args: []string{"--metric=a"}, want: parsed{Err: `opt '\x00' name "metric"`}},
	{args: []string{"--me"}, want: parsed{Err: `opt '\x00' name "me"`}},
	{args: []string{"-tmetrics"}, want: parsed{Opts: []string{"test-conf", "mbuf-size=etrics"}}},
	{args: []string{"---metrics"}, want: parsed{Err: `opt '\x00' name "-metrics"`}},
	{args: []string{"-metrics"}, want: parsed{Err: `opt '\x00' of --metrics missing name "metrics"`}},
	{args: []string{"--metrics"}, want: parsed{Err: `opt '\x00' of --metrics missing name "metrics"`}},
}

func TestGetoptLong(t *testing.T) {
	for _, c := range getoptCases {
		if diff := cmp.Diff(c.want, getopt(c.args, nutcrackerOptions, !c.posix)); diff != "" {
			t.Errorf("%q (POSIXLY_CORRECT %v): (-want +got)\n%s", c.args, c.posix, diff)
		}
	}
}

// An exact long name wins over the longer names it is a prefix of; an own option is found by its
// full name only.
func TestGetoptLongPrefixes(t *testing.T) {
	specs := []optSpec{{long: "conf", hasArg: true}, {long: "conf-file", hasArg: true}, {long: "co", own: true}}
	for _, c := range []struct {
		args []string
		want parsed
	}{
		{[]string{"--conf=a"}, parsed{Opts: []string{"conf=a"}}},
		{[]string{"--conf-=a"}, parsed{Opts: []string{"conf-file=a"}}},
		{[]string{"--con=a"}, parsed{Err: `opt '\x00' name "con" ambiguous --conf --conf-file`}},
		{[]string{"--co"}, parsed{Opts: []string{"co"}}},
		{[]string{"-co"}, parsed{Opts: []string{"co"}}},
		{[]string{"--c"}, parsed{Err: `opt '\x00' name "c" ambiguous --conf --conf-file`}},
	} {
		if diff := cmp.Diff(c.want, getopt(c.args, specs, true)); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", c.args, diff)
		}
	}
}

// nutcrackerOnly is nutcracker's own options, without podblocks' --metrics.
func nutcrackerOnly() []optSpec {
	return slices.DeleteFunc(slices.Clone(nutcrackerOptions), func(s optSpec) bool { return s.own })
}

// FuzzParseNutcrackerArgs reads any command line (args separated by NUL bytes, which no argument
// can hold) and checks, besides that nothing panics:
//   - the outcome is a function of the command line;
//   - a refusal is one of nutcracker's messages, and what is accepted is in nutcracker's ranges;
//   - podblocks' --metrics changes nothing that nutcracker accepts, and where it is not used, the
//     outcome is the one without it;
//   - getopt_long's rules: an operand in front changes nothing but the operands (or, under
//     POSIXLY_CORRECT, ends the options); POSIXLY_CORRECT reads the options before the first
//     operand as without it; "--" and anything after an accepted line change nothing but the
//     operands; "-ab" is "-a -b" and "-cX" is "-c X"; "--name=X" is "--name X".
func FuzzParseNutcrackerArgs(f *testing.F) {
	for _, c := range nutcrackerCommandLines {
		f.Add(strings.Join(c.args, "\x00"), c.posix)
	}
	for _, c := range getoptCases {
		f.Add(strings.Join(c.args, "\x00"), c.posix)
	}
	only := nutcrackerOnly()
	f.Fuzz(func(t *testing.T, line string, posix bool) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		a, err := parseNutcrackerArgs(args, posix)
		if a2, err2 := parseNutcrackerArgs(args, posix); !reflect.DeepEqual(a, a2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("%q: two readings differ: %+v, %v; %+v, %v", args, a, err, a2, err2)
		}
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "option -") && !strings.HasPrefix(msg, "invalid option -- '") &&
				msg != "mbuf chunk size must be between 512 and 16777216 bytes" {
				t.Fatalf("%q: %q is none of nutcracker's messages", args, msg)
			}
		} else if a.statsPort < 1 || a.statsPort > 65535 || a.mbuf < 512 || a.mbuf > 16<<20 || a.verbose < 0 || a.interval < 0 {
			t.Fatalf("%q: accepted out of range: %+v", args, a)
		}

		// --metrics: where nutcracker's options alone accept the line, it means the same; where the
		// line does not use --metrics, the outcome is the same as without it.
		aOnly, errOnly := readNutcrackerArgs(args, only, posix)
		full := getopt(args, nutcrackerOptions, !posix)
		usesOwn := slices.ContainsFunc(full.Opts, func(o string) bool { return strings.HasPrefix(o, "metrics=") }) ||
			strings.Contains(full.Err, "--metrics")
		if (errOnly == nil || !usesOwn) && (!reflect.DeepEqual(a, aOnly) || fmt.Sprint(err) != fmt.Sprint(errOnly)) {
			t.Fatalf("%q: with --metrics %+v, %v; without %+v, %v", args, a, err, aOnly, errOnly)
		}

		// The rules of getopt_long, on nutcracker's options alone.
		p := getopt(args, only, !posix)
		withOperand := getopt(append([]string{"x"}, args...), only, !posix)
		want := parsed{Opts: p.Opts, Operands: append([]string{"x"}, p.Operands...), Err: p.Err}
		if posix {
			want = parsed{Operands: append([]string{"x"}, args...)}
		}
		if diff := cmp.Diff(want, withOperand); diff != "" {
			t.Fatalf("%q: an operand in front: (-want +got)\n%s", args, diff)
		}
		if posix {
			k := len(args) - len(p.Operands)
			if p.Err != "" {
				k = len(args)
			}
			before := getopt(args[:k], only, true)
			if diff := cmp.Diff(parsed{Opts: p.Opts, Err: p.Err}, parsed{Opts: before.Opts, Operands: before.Operands, Err: before.Err}); diff != "" {
				t.Fatalf("%q: POSIXLY_CORRECT, against the %d arguments before the operands: (-want +got)\n%s", args, k, diff)
			}
		}
		if p.Err == "" {
			// The "--" ends the options, or is an operand when they have ended already.
			more := getopt(append(slices.Clone(args), "--", "-x", "--c"), only, !posix)
			tail := more.Operands[min(len(p.Operands), len(more.Operands)):]
			if more.Err != "" || !slices.Equal(more.Opts, p.Opts) || len(more.Operands) < len(p.Operands) ||
				!slices.Equal(more.Operands[:len(p.Operands)], p.Operands) ||
				!slices.Equal(tail, []string{"-x", "--c"}) && !slices.Equal(tail, []string{"--", "-x", "--c"}) {
				t.Fatalf("%q: %+v; with \"--\" and more after it: %+v", args, p, more)
			}
		}
		if len(args) > 0 && equivalentSplit(args[0], only) {
			arg := args[0]
			var split []string
			if s := lookupShort(only, arg[1]); s != nil {
				// "-ab" is "-a -b" and "-cX" is "-c X".
				rest := arg[2:]
				if !s.hasArg {
					rest = "-" + rest
				}
				split = []string{arg[:2], rest}
			} else {
				name, value, _ := strings.Cut(arg, "=")
				split = []string{name, value}
			}
			q := getopt(slices.Concat(split, args[1:]), only, !posix)
			if diff := cmp.Diff(p, q); diff != "" {
				t.Fatalf("%q: against %q for %q: (-want +got)\n%s", args, split, arg, diff)
			}
		}
	})
}

// equivalentSplit says whether arg, the first argument of a command line, may be split in two
// without changing the outcome: a cluster "-aX"
// whose letter a is known, and which splits into "-a -X" (a takes no value, and X does not start
// with '-', which would make "--X" a long option) or "-a X" (a takes one); or "--name=X" for a
// known option that takes a value.
func equivalentSplit(arg string, specs []optSpec) bool {
	if len(arg) < 3 || arg[0] != '-' {
		return false
	}
	if arg[1] != '-' {
		s := lookupShort(specs, arg[1])
		return s != nil && (s.hasArg || arg[2] != '-')
	}
	name, _, hasValue := strings.Cut(arg[2:], "=")
	s, _ := lookupLong(specs, name)
	return hasValue && s != nil && s.hasArg
}
