package events

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// syncer is group commit over the embedded file store (bus.sync: group).
// The embedded server runs without SyncAlways, so a stored message is
// written to its block file (an R1 file stream writes in place, before its
// PubAck: filestore.go writeMsgRecordLocked → flushPendingMsgsLocked) but
// not fsynced. A Publish whose PubAck came asks the syncer for an fsync
// and waits: it joins the next round, the syncer takes the round with
// every waiter registered so far, fsyncs the stream's newest block files
// (and its directory when a block appeared), then releases them all at
// once (one channel closed). Waiters that arrive during an fsync join the
// round after it: one fsync covers every message acknowledged before it
// began.
type syncer struct {
	dir  string // the stream's msgs directory
	kick chan struct{}
	quit chan struct{}
	done chan struct{}

	mu   sync.Mutex
	next *round // the round the next fsync serves, once someone waits

	// sync fsyncs the blocks (s.syncBlocks; tests replace it)
	sync func() error

	hi    int      // highest block index seen at the last sync
	last  *os.File // open block file hi
	hiDir int      // highest block index when the directory was synced

	syncs atomic.Uint64 // fsync rounds, for tests and the bench note
}

// round is one fsync and its waiters: done is closed when it completed,
// with err.
type round struct {
	done    chan struct{}
	err     error
	waiters int // for tests
}

func newSyncer(dir string) *syncer { return startSyncer(dir, nil) }

// startSyncer starts a syncer whose rounds call syncFn (nil: fsync the
// blocks under dir).
func startSyncer(dir string, syncFn func() error) *syncer {
	s := &syncer{dir: dir, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.sync = syncFn
	if s.sync == nil {
		s.sync = s.syncBlocks
	}
	go s.run()
	return s
}

func (s *syncer) stop() {
	select {
	case <-s.quit:
		return
	default:
		close(s.quit)
	}
	<-s.done
}

// wait returns once an fsync that began after the call has completed.
func (s *syncer) wait(ctx context.Context) error {
	s.mu.Lock()
	r := s.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		s.next = r
	}
	r.waiters++
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errors.New("bus closed")
	}
}

func (s *syncer) run() {
	defer close(s.done)
	defer func() {
		if s.last != nil {
			s.last.Close()
		}
	}()
	for {
		select {
		case <-s.kick:
		case <-s.quit:
			return
		}
		for {
			// let the publishes whose PubAck has just come join
			// before the round is taken (group commit's gather)
			runtime.Gosched()
			if !s.round() {
				break
			}
		}
	}
}

// round runs one fsync for the waiters registered so far, if any; it
// reports whether it ran one that succeeded.
func (s *syncer) round() bool {
	select {
	case <-s.quit:
		return false
	default:
	}
	s.mu.Lock()
	r := s.next
	s.next = nil
	s.mu.Unlock()
	if r == nil {
		return false
	}
	err := s.sync()
	s.syncs.Add(1)
	r.err = err
	close(r.done)
	if err != nil {
		// the waiters have their 503; the next ones try again
		select {
		case <-s.quit:
		case <-time.After(syncRetryWait):
		}
		return false
	}
	return true
}

// syncRetryWait is the pause after a failed fsync before the next round.
const syncRetryWait = 50 * time.Millisecond

// sync fsyncs every block written since the last sync: the newest block
// known then and any block created since, and the directory when blocks
// were created. Blocks are numbered upwards: after the first round it
// probes for the next numbers instead of listing the directory (which
// holds a block per few MB of the stream's retention).
func (s *syncer) syncBlocks() error {
	from := s.hi
	if from == 0 || !exists(s.blockPath(from)) {
		hi, err := s.newestBlock()
		if err != nil {
			return err
		}
		from = hi
	}
	hi := from
	for exists(s.blockPath(hi + 1)) {
		hi++
	}
	for i := from; i <= hi; i++ {
		f := s.last
		if f == nil || i != s.hi {
			var err error
			if f, err = os.Open(s.blockPath(i)); err != nil {
				if os.IsNotExist(err) {
					continue // removed since (aged out): nothing to keep
				}
				return fmt.Errorf("sync: %w", err)
			}
			if s.last != nil {
				s.last.Close()
			}
			s.last, s.hi = f, i
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	}
	if hi > s.hiDir {
		if err := syncDir(s.dir); err != nil {
			return err
		}
		s.hiDir = hi
	}
	return nil
}

func (s *syncer) blockPath(i int) string {
	return filepath.Join(s.dir, strconv.Itoa(i)+".blk")
}

// newestBlock lists the directory for the highest block number.
func (s *syncer) newestBlock() (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("sync: %w", err)
	}
	hi := 0
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".blk"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				hi = max(hi, i)
			}
		}
	}
	if hi == 0 {
		// A PubAck came, so a block holds the message: the layout is not
		// the one this code knows. Refuse rather than promise.
		return 0, fmt.Errorf("sync: no block file in %s", s.dir)
	}
	return hi, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
