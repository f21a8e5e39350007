package twemproxy

// PolledClients returns how many of the clients of pool the poller reads (pollIdle or pollBusy)
// and how many clients the pool has.
func PolledClients(s *Server, pool string) (polled, total int) {
	s.mu.Lock()
	pr := s.running[pool]
	s.mu.Unlock()
	if pr == nil {
		return 0, 0
	}
	p := pr.p
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	for c := range p.clients {
		total++
		if c.polled() {
			polled++
		}
	}
	return polled, total
}
