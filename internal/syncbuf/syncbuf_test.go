package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestBufferKeepsConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := len(b.String()); got != 8*100*2 {
		t.Errorf("kept %d bytes, want %d", got, 8*100*2)
	}
}

func TestBufferMax(t *testing.T) {
	b := Buffer{Max: 10}
	for range 5 {
		if n, err := b.Write([]byte("abcd")); n != 4 || err != nil {
			t.Fatalf("Write = %d, %v; want 4, nil even past Max", n, err)
		}
	}
	if got := b.String(); got != strings.Repeat("abcd", 3) {
		t.Errorf("kept %q, want the writes up to the first one at or past Max", got)
	}
}
