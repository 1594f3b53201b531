package repository

// SharedTransactions is how many transactions s wrote for more than one
// checkpoint (group commit); 0 where it does not group them.
func SharedTransactions(s *Storage) int64 {
	if s.group == nil {
		return 0
	}
	return s.group.shared.Load()
}

// HoldCheckpoints makes s's checkpoints queue as if one were being written,
// until release; false where s does not group them.
func HoldCheckpoints(s *Storage) (release func(), ok bool) {
	if s.group == nil {
		return func() {}, false
	}
	g := s.group
	g.mu.Lock()
	held := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !held {
		return func() {}, false
	}
	return g.next, true
}

// QueuedCheckpoints is how many checkpoints wait for s's next shared
// transaction.
func QueuedCheckpoints(s *Storage) int {
	if s.group == nil {
		return 0
	}
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.queue)
}
