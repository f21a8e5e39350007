//go:build race

package twemproxy_test

const raceEnabled = true
