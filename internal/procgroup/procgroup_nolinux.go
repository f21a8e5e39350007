//go:build unix && !linux

package procgroup

// onlyZombies is false: without /proc, processes that exited cannot be told from running ones.
func onlyZombies(int) bool { return false }
