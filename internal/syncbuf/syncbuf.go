package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes under a lock. The zero value keeps everything.
type Buffer struct {
	// Max, if positive, bounds what is kept: once Max bytes are held,
	// further writes are reported as written and dropped, so that a chatty
	// child can neither block nor exhaust memory.
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Max > 0 && s.b.Len() >= s.Max {
		return len(p), nil
	}
	return s.b.Write(p)
}

// String returns what has been kept so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
