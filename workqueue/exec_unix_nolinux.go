//go:build unix && !linux

package workqueue

// killLeftGroup kills nothing: without /proc to tell that a live process group is still the dead
// command's (its id may have been given to another group since), what a killed worker's command
// left running is left running.
func killLeftGroup(string) bool { return false }
