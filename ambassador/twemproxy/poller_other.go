//go:build !linux

package twemproxy

// clientPoller is not available: every client's goroutine reads its requests.
type clientPoller struct{}

type pollClient struct{}

func newClientPoller(*pool) *clientPoller { return nil }

func (*clientPoller) start()             {}
func (*clientPoller) close()             {}
func (*clientPoller) adopt(*client) bool { return false }
func (*clientPoller) release(*client)    {}
func (*clientPoller) forget(*client)     {}

func (*clientPoller) adoptSession(*session) bool { return false }
func (*clientPoller) takeBack(*session) bool     { return false }
func (*clientPoller) releaseSession(*session)    {}
func (*clientPoller) forgetSession(*session)     {}

func (*session) setPollReader() {}
func (*session) readWaiting()   {}
func (*session) kicked() bool   { return true }
func (*session) polled() bool   { return false }

func (*client) polled() bool { return false }
