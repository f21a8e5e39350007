//go:build !race

package scatter_test

const raceOn = false
