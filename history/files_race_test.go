package history

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate"
)

// Two processes writing NDJSON history into one directory (two standalone
// `hookgate call`s on one data_dir) both pick the next file name; the one
// that loses the race takes the next number instead of failing its rows.
func TestFileSinksShareDirectory(t *testing.T) {
	dir := t.TempDir()
	const sinks, rows = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, sinks)
	for i := 0; i < sinks; i++ {
		s, err := openFileSink(dir, 1, 0, time.Now) // every row rotates
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.closeFile()
			for j := 0; j < rows; j++ {
				x := hookgate.Exchange{Direction: hookgate.Inbound, Outcome: hookgate.OutcomeAccepted, EventID: fmt.Sprintf("e-%d-%d", i, j)}
				if err := s.write([]hookgate.Exchange{x}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != sinks*rows {
		t.Errorf("%d files, want %d (one row each)", len(files), sinks*rows)
	}
}
