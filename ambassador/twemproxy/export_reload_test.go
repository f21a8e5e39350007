package twemproxy

// FailListen makes s's binds of the addresses for which fail returns an error fail with it, as if
// another process held them.
func FailListen(s *Server, fail func(network, addr string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listenHook = fail
}
