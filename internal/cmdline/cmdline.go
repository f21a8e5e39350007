// Package cmdline ends the example commands the way the flag package ends its own (a flag set made
// with flag.ExitOnError), while their run functions return errors: help asked for (-h, -help,
// --help) prints the usage and exits 0, it is no error; a command line the command cannot read
// exits 2; any other error exits 1.
//
// A command parses its flag sets (made with flag.ContinueOnError, so that they print a mistake and
// the usage and return) with [Parse], returns its other command-line mistakes (a stray argument, an
// unknown subcommand) as [Usagef] errors, and ends main with [Exit].
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
)

// UsageError is a command line the command cannot read (exit status 2), such as an unknown flag, a
// flag value of the wrong type, a stray argument or an unknown subcommand.
type UsageError struct {
	Err     error
	printed bool // the flag set printed Err, and the usage, already
}

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

// Addr refuses addr, the value of flag (named with its dash: "-http"), an address to listen on,
// with a usage error unless it is HOST:PORT whose port net.Listen can use: a number from 0 (any
// free port) to 65535, or a service name ("http"). It is [AddrFrom] with 0.
func Addr(flag, addr string) error { return AddrFrom(flag, addr, 0) }

// AddrFrom refuses addr, the value of flag (named with its dash: "-backends") or an item of it,
// with a usage error unless it is HOST:PORT whose port is a number from min (0 for an address to
// listen on; 1 for one to dial) to 65535, or a service name ("http", as net.LookupPort knows it).
// Such an address is a command-line mistake (exit status 2), where a port in use or a host with no
// such interface is a failure of the moment, for the listen or dial to report (exit status 1).
func AddrFrom(flag, addr string, min int) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Usagef("%s %q: want HOST:PORT", flag, addr)
	}
	return checkPort(flag, addr, port, min)
}

// checkPort refuses port, of value, the value of flag, unless it is a number from min to 65535 or a
// service name net.LookupPort knows (from /etc/services, or Go's own short list).
func checkPort(flag, value, port string, min int) error {
	n, err := net.LookupPort("tcp", port)
	switch {
	case err != nil && !numeric(port):
		return Usagef("%s %q: port %q: want a number from %d to 65535 or a known service name (such as \"http\"); it is neither", flag, value, port, min)
	case err != nil || n < min:
		return Usagef("%s %q: port %q: want a number from %d to 65535", flag, value, port, min)
	}
	return nil
}

// numeric reports whether port is digits, with a sign or not: a number, if one out of range.
func numeric(port string) bool {
	digits := strings.TrimLeft(port, "+-")
	return digits != "" && strings.Trim(digits, "0123456789") == ""
}

// HTTPURL refuses u, the value of flag (named with its dash: "-webhook"), with a usage error unless
// it is an http or https URL with a host, and a port, when it names one, that a dial can use (a
// number from 1 to 65535; url.Parse takes any digits), so that a URL nothing can ever reach is a
// command-line mistake, not a request failing and retried for as long as the command runs.
func HTTPURL(flag, u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return Usagef("%s %q: want an http or https URL", flag, u)
	}
	if port := p.Port(); port != "" {
		return checkPort(flag, u, port, 1)
	}
	return nil
}

// Usagef returns a *UsageError with the message fmt.Errorf(format, args...) makes.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Parse parses args with fs, as fs.Parse does, for a flag set made with flag.ContinueOnError,
// which prints the usage on -h and a mistake with the usage itself. Parse returns flag.ErrHelp as
// it is for help, and a mistake as a *UsageError that [Report] does not print again.
func Parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &UsageError{Err: err, printed: true}
}

// ParseFlags is [Parse] for a command that takes no arguments but flags: an argument left over
// (the flag package stops at the first one that is no flag, and drops the flags after it) is a
// *UsageError naming what was left.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

// Status is the exit status for err (which may wrap what this package returns): 0 for nil and for
// flag.ErrHelp, 2 for a *UsageError, 1 for any other error.
func Status(err error) int {
	var u *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// Report writes err on w as the line "name: err" (or "err" when its message starts with "name: "
// already, as a package's errors of the same name do), unless it is nil, help, or a mistake its flag
// set printed already, and returns Status(err).
func Report(w io.Writer, name string, err error) int {
	status := Status(err)
	var u *UsageError
	if status != 0 && !(errors.As(err, &u) && u.printed) {
		if msg := err.Error(); strings.HasPrefix(msg, name+": ") {
			fmt.Fprintln(w, msg)
		} else {
			fmt.Fprintf(w, "%s: %s\n", name, msg)
		}
	}
	return status
}

// Exit ends the process after err, a command's result: it reports err on stderr and exits with its
// status (see [Report]). On nil it returns, and main goes on.
func Exit(name string, err error) {
	if err != nil {
		os.Exit(Report(os.Stderr, name, err))
	}
}
