package cmdline

import (
	"flag"
	"strings"
)

// List splits value, the comma-separated list of flag -name, into its items, as they are. An empty
// value is an empty list; an empty (or blank) item, as in ",", "a,,b" or "a,", is a *UsageError
// naming the flag and the value: a hole in a list is a typo, which would otherwise mean "." or "" to
// whatever reads the item.
func List(name, value string) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	items := strings.Split(value, ",")
	for _, it := range items {
		if strings.TrimSpace(it) == "" {
			return nil, Usagef("-%s %q: empty item in the comma-separated list", name, value)
		}
	}
	return items, nil
}

// OnlyWith refuses flags that mean something only with another setting: when ok is false and fs's
// command line gave any of the flags names (fs parsed it already), it returns the *UsageError
// "-NAME: only with WITH" for the first of names given; otherwise nil. A flag the command line did
// not give is not refused, whatever its default.
func OnlyWith(fs *flag.FlagSet, ok bool, with string, names ...string) error {
	if ok {
		return nil
	}
	given := Given(fs)
	for _, n := range names {
		if given[n] {
			return Usagef("-%s: only with %s", n, with)
		}
	}
	return nil
}

// Given returns the names of the flags fs's command line set (fs parsed it already), as a set.
func Given(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}
