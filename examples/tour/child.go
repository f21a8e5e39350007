package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// childArg marks a run of the tour's own binary as a child process of one of its acts. The tour's
// container image is FROM scratch, with no shell, so the binary itself plays the commands its acts
// run: the work-queue item command and the health adapter's exec check.
const childArg = "-tour-child"

// selfCommand returns the command line that runs this binary as the child role.
func selfCommand(role string) []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, childArg, role}
}

// childRole returns the role this process was started to play, or "" for a normal run.
func childRole(args []string) string {
	if len(args) == 3 && args[1] == childArg {
		return args[2]
	}
	return ""
}

// runChild plays role and returns the process' exit code.
func runChild(role string) int {
	switch role {
	case "ok":
		return 0
	case "upcase":
		// The work-queue item command: WORK_ITEM_FILE holds the payload; the result goes to
		// OUTPUT_DIR/result upper-cased; "poison" cannot be digested and exits 3.
		p, err := os.ReadFile(os.Getenv("WORK_ITEM_FILE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		p = bytes.TrimSpace(p)
		if string(p) == "poison" {
			fmt.Fprintf(os.Stderr, "cannot digest %s\n", p)
			return 3
		}
		if err := os.WriteFile(filepath.Join(os.Getenv("OUTPUT_DIR"), "result"), append(bytes.ToUpper(p), '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "tour: unknown child role %q\n", role)
	return 2
}
