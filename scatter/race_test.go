//go:build race

package scatter_test

// raceOn shrinks the heaviest simulations under the race detector, which slows them tenfold.
const raceOn = true
