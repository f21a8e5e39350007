package main

import "strings"

// optSpec is one option of a command line read as GNU getopt_long reads it.
type optSpec struct {
	short  byte   // the option's letter, or 0 for an option with a long name only
	long   string // the long name, without the dashes; "" for a letter only
	hasArg bool   // the option takes a value (getopt_long's required_argument); otherwise none
	// own marks an option that the program adds to a command line it otherwise reads as another
	// program does: its long name matches only when spelled out in full (never by a prefix, so
	// that it makes no abbreviation of the other options ambiguous), and -long (one dash) is
	// taken as well as --long. An own option should be one that the other program refuses, so
	// that it changes the meaning of no command line that program accepts.
	own bool
}

// optArg is one option found on a command line, with its value ("" when it takes none).
type optArg struct {
	spec  *optSpec
	value string
}

// getoptError is an option that getopt_long refuses.
type getoptError struct {
	// opt is what getopt_long leaves in optopt: the letter of an unknown short option, or of a
	// known option whose value is missing or not wanted; 0 for an unknown or ambiguous long
	// option, and for an own option that has no letter.
	opt       byte
	spec      *optSpec // the option, when it is known
	missing   bool     // spec takes a value and the command line ended before it
	name      string   // a long option as written, between the dashes and any "="
	ambiguous []string // the long options (with their dashes) that name is a prefix of, when several
}

// getoptLong reads args (the command line without the program's name) as glibc's getopt_long
// reads it with the options specs and opterr = 0, until the end or the first option it refuses.
//
//   - "-abc" is a cluster of letters: each is an option; the first that takes a value takes the
//     rest of the cluster as its value ("-cfile"), or the next argument when nothing is left,
//     whatever that argument is ("-c -t" sets the file "-t").
//   - "--name=value" and "--name value" are long options; name may be any prefix of one long
//     name, or one that is the exact name. A value after "=" for an option that takes none is
//     refused.
//   - "--" ends the options; "-" and arguments that do not start with '-' are operands.
//   - When permute is true (GNU's default) operands may stand anywhere and options after them
//     are still read; when false (POSIXLY_CORRECT is set) the first operand ends the options.
//
// It returns the options in the order of args and the operands; when it refuses an option, it
// returns the options and operands before it and what it refused. The long names in specs must
// differ: a prefix of two entries is always ambiguous here (getopt_long lets it pass when the two
// entries take the same argument and return the same value, which nutcracker's table never has).
func getoptLong(args []string, specs []optSpec, permute bool) (opts []optArg, operands []string, err *getoptError) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		// next takes the argument after a as spec's value.
		next := func(spec *optSpec) *getoptError {
			if i+1 == len(args) {
				return &getoptError{opt: spec.short, spec: spec, missing: true, name: spec.long}
			}
			i++
			opts = append(opts, optArg{spec: spec, value: args[i]})
			return nil
		}
		switch {
		case a == "--":
			return opts, append(operands, args[i+1:]...), nil
		case len(a) < 2 || a[0] != '-':
			if !permute {
				return opts, append(operands, args[i:]...), nil
			}
			operands = append(operands, a)
			continue
		}
		var spec *optSpec
		var name, value string
		var hasValue bool
		if strings.HasPrefix(a, "--") {
			name, value, hasValue = strings.Cut(a[2:], "=")
			var ambiguous []string
			if spec, ambiguous = lookupLong(specs, name); spec == nil {
				return opts, operands, &getoptError{name: name, ambiguous: ambiguous}
			}
		} else if name, value, hasValue = strings.Cut(a[1:], "="); lookupOwn(specs, name) != nil {
			spec = lookupOwn(specs, name)
		} else {
			// A cluster of letters.
			for j := 1; j < len(a); j++ {
				spec = lookupShort(specs, a[j])
				switch {
				case spec == nil:
					return opts, operands, &getoptError{opt: a[j]}
				case !spec.hasArg:
					opts = append(opts, optArg{spec: spec})
					continue
				case j+1 < len(a):
					opts = append(opts, optArg{spec: spec, value: a[j+1:]})
				default:
					if err := next(spec); err != nil {
						return opts, operands, err
					}
				}
				break
			}
			continue
		}
		switch {
		case hasValue && !spec.hasArg:
			return opts, operands, &getoptError{opt: spec.short, spec: spec, name: name}
		case hasValue:
			opts = append(opts, optArg{spec: spec, value: value})
		case !spec.hasArg:
			opts = append(opts, optArg{spec: spec})
		default:
			if err := next(spec); err != nil {
				return opts, operands, err
			}
		}
	}
	return opts, operands, nil
}

// lookupLong finds the option whose long name is name, or else the one whose long name name is
// a prefix of (never an own option's). When name is a prefix of several, it returns those
// several instead.
func lookupLong(specs []optSpec, name string) (*optSpec, []string) {
	var found *optSpec
	var prefixOf []string
	for i := range specs {
		s := &specs[i]
		switch {
		case s.long == "":
		case s.long == name:
			return s, nil
		case !s.own && strings.HasPrefix(s.long, name):
			if found == nil {
				found = s
			}
			prefixOf = append(prefixOf, "--"+s.long)
		}
	}
	if len(prefixOf) > 1 {
		return nil, prefixOf
	}
	return found, nil
}

// lookupOwn finds the own option whose long name is name.
func lookupOwn(specs []optSpec, name string) *optSpec {
	for i := range specs {
		if specs[i].own && specs[i].long != "" && specs[i].long == name {
			return &specs[i]
		}
	}
	return nil
}

// lookupShort finds the option whose letter is c.
func lookupShort(specs []optSpec, c byte) *optSpec {
	for i := range specs {
		if c != 0 && specs[i].short == c {
			return &specs[i]
		}
	}
	return nil
}
