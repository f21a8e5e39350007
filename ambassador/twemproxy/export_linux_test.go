//go:build linux

package twemproxy

// SetRoundSessionHook makes the poller run f at the start of every server session's event in its
// rounds, until the returned function restores the hook. Set it only while no pool runs.
func SetRoundSessionHook(f func()) (restore func()) {
	old := testHookRoundSession
	testHookRoundSession = f
	return func() { testHookRoundSession = old }
}
