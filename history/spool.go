package history

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hookgate/hookgate"
)

// ErrSpoolFull is reported (wrapped) by Writer.Healthy when the spool has
// reached history.spool_max_bytes and rows are being dropped.
var ErrSpoolFull = errors.New("history: spool full")

// Spool layout, under <data_dir>/history/spool:
//
//	seg-<seq>.ndjson        a batch never sent to ClickHouse
//	seg-<seq>.tried.ndjson  a batch whose insert was attempted: it may be
//	                        (partly) in ClickHouse already, so replay first
//	                        asks which of its exchange_ids are there
//	seg-<seq>.open          overflow rows being appended (Record with a
//	                        full queue); sealed at the next flush
//	seg-<seq>.tmp           a segment being written (write, fsync, rename)
//	rejected/               segments ClickHouse refused as data errors
//
// One JSONEachRow line per row (codec.go), as in the NDJSON files; the
// lines of earlier versions (the JSON of hookgate.Exchange) still read. seq
// orders the segments; replay goes oldest first and deletes a segment only
// after its insert succeeded.
const (
	segPrefix   = "seg-"
	segSuffix   = ".ndjson"
	triedSuffix = ".tried.ndjson"
	openSuffix  = ".open"
	tmpSuffix   = ".tmp"
)

type segment struct {
	seq   uint64
	tried bool
	size  int64
}

type spool struct {
	dir string
	max int64

	mu    sync.Mutex
	segs  []segment // sealed, oldest first
	bytes int64     // sealed + open
	next  uint64

	open     *os.File // overflow segment, nil when none
	openBuf  *bufio.Writer
	openSeq  uint64
	openRows int
}

func openSpool(dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(filepath.Join(dir, "rejected"), 0o755); err != nil {
		return nil, fmt.Errorf("history: spool dir: %w", err)
	}
	s := &spool{dir: dir, max: maxBytes, next: 1}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("history: spool dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, segPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, segPrefix)
		var seq uint64
		var tried, leftover bool
		for _, suf := range []string{triedSuffix, segSuffix, openSuffix, tmpSuffix} {
			if num, ok := strings.CutSuffix(rest, suf); ok {
				seq, err = strconv.ParseUint(num, 10, 64)
				tried = suf == triedSuffix
				leftover = suf == openSuffix || suf == tmpSuffix
				break
			}
		}
		if err != nil || seq == 0 {
			continue
		}
		path := filepath.Join(dir, name)
		if leftover {
			// A crash left it half written: keep its whole lines. A .tmp
			// batch may have been tried already, so treat it as tried.
			if err := truncatePartialLine(path); err != nil {
				return nil, fmt.Errorf("history: recover spool segment %s: %w", name, err)
			}
			tried = strings.HasSuffix(name, tmpSuffix)
			sealed := s.path(segment{seq: seq, tried: tried})
			if err := os.Rename(path, sealed); err != nil {
				return nil, fmt.Errorf("history: recover spool segment %s: %w", name, err)
			}
			path = sealed
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("history: spool: %w", err)
		}
		if st.Size() == 0 {
			os.Remove(path)
			continue
		}
		s.segs = append(s.segs, segment{seq: seq, tried: tried, size: st.Size()})
		s.bytes += st.Size()
		s.next = max(s.next, seq+1)
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmpUint(a.seq, b.seq) })
	syncDir(dir)
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *spool) path(seg segment) string {
	suf := segSuffix
	if seg.tried {
		suf = triedSuffix
	}
	return filepath.Join(s.dir, fmt.Sprintf("%s%020d%s", segPrefix, seg.seq, suf))
}

// size is the spool's bytes on disk.
func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// pending reports whether rows wait in the spool (sealed or open).
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) > 0 || s.open != nil
}

// sealedPending reports whether sealed segments wait in the spool: rows
// that ClickHouse has not taken yet and that are older than anything still
// in memory. The open overflow segment does not count: its rows arrived
// while the queue was full, after the rows the writer is sending now.
func (s *spool) sealedPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) > 0
}

// write stores rows as a new sealed segment (tmp file, fsync, rename,
// fsync of the directory). It fails with ErrSpoolFull when the segment would
// take the spool over its cap.
func (s *spool) write(rows []hookgate.Exchange, tried bool) error {
	data, err := encodeRows(rows)
	if err != nil {
		return fmt.Errorf("history: encode spool rows: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.bytes+int64(len(data)) > s.max {
		return ErrSpoolFull
	}
	seg := segment{seq: s.next, tried: tried, size: int64(len(data))}
	tmp := filepath.Join(s.dir, fmt.Sprintf("%s%020d%s", segPrefix, seg.seq, tmpSuffix))
	if err := writeFileSync(tmp, data); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("history: write spool segment: %w", err)
	}
	if err := os.Rename(tmp, s.path(seg)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("history: write spool segment: %w", err)
	}
	syncDir(s.dir)
	s.next++
	s.segs = append(s.segs, seg)
	s.bytes += seg.size
	return nil
}

// appendOverflow appends one row to the open overflow segment, opening one
// if needed. It is buffered: sealOverflow makes it durable.
func (s *spool) appendOverflow(x *hookgate.Exchange) error {
	data, err := encodeRows([]hookgate.Exchange{*x})
	if err != nil {
		return fmt.Errorf("history: encode spool row: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.bytes+int64(len(data)) > s.max {
		return ErrSpoolFull
	}
	if s.open == nil {
		seq := s.next
		f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("%s%020d%s", segPrefix, seq, openSuffix)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("history: open overflow segment: %w", err)
		}
		s.next++
		s.open, s.openBuf, s.openSeq, s.openRows = f, bufio.NewWriterSize(f, 64<<10), seq, 0
	}
	if _, err := s.openBuf.Write(data); err != nil {
		return fmt.Errorf("history: write overflow segment: %w", err)
	}
	s.openRows++
	s.bytes += int64(len(data))
	return nil
}

// sealOverflow makes the open overflow segment a sealed one.
func (s *spool) sealOverflow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		return nil
	}
	f := s.open
	s.open = nil
	err := s.openBuf.Flush()
	if err == nil {
		err = f.Sync()
	}
	st, serr := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = serr
	}
	if err != nil {
		// Keep it for recovery on the next start: it is still on disk
		// as a .open file.
		return fmt.Errorf("history: seal overflow segment: %w", err)
	}
	seg := segment{seq: s.openSeq, size: st.Size()}
	if err := os.Rename(f.Name(), s.path(seg)); err != nil {
		return fmt.Errorf("history: seal overflow segment: %w", err)
	}
	syncDir(s.dir)
	// Segments written while it was open have higher numbers: insert in
	// order.
	i, _ := slices.BinarySearchFunc(s.segs, seg.seq, func(a segment, seq uint64) int { return cmpUint(a.seq, seq) })
	s.segs = slices.Insert(s.segs, i, seg)
	return nil
}

// oldest returns the oldest sealed segment.
func (s *spool) oldest() (segment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) == 0 {
		return segment{}, false
	}
	return s.segs[0], true
}

// read returns a segment's rows. Lines that do not parse are returned as
// a count, not silently skipped.
func (s *spool) read(seg segment) ([]hookgate.Exchange, int, error) {
	f, err := os.Open(s.path(seg))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var rows []hookgate.Exchange
	bad := 0
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var x hookgate.Exchange
			if jerr := decodeRow(line, &x); jerr != nil {
				bad++
			} else {
				rows = append(rows, x)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	return rows, bad, nil
}

// markTried renames a segment to its tried name before an insert of it is
// attempted, so that a crash between a successful insert and the delete is
// caught by the existence check on the next replay.
func (s *spool) markTried(seg segment) (segment, error) {
	if seg.tried {
		return seg, nil
	}
	t := seg
	t.tried = true
	if err := os.Rename(s.path(seg), s.path(t)); err != nil {
		return seg, fmt.Errorf("history: mark spool segment: %w", err)
	}
	syncDir(s.dir)
	s.mu.Lock()
	for i := range s.segs {
		if s.segs[i].seq == seg.seq {
			s.segs[i].tried = true
		}
	}
	s.mu.Unlock()
	return t, nil
}

// remove deletes a segment whose rows are in ClickHouse.
func (s *spool) remove(seg segment) error {
	if err := os.Remove(s.path(seg)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("history: remove spool segment: %w", err)
	}
	syncDir(s.dir)
	s.forget(seg)
	return nil
}

// reject moves a segment ClickHouse refused to rejected/, for an operator.
func (s *spool) reject(seg segment) error {
	dst := filepath.Join(s.dir, "rejected", filepath.Base(s.path(seg)))
	if err := os.Rename(s.path(seg), dst); err != nil {
		return fmt.Errorf("history: move rejected segment: %w", err)
	}
	syncDir(s.dir)
	s.forget(seg)
	return nil
}

// writeRejected stores rows ClickHouse refused under rejected/.
func (s *spool) writeRejected(rows []hookgate.Exchange) (string, error) {
	data, err := encodeRows(rows)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	seq := s.next
	s.next++
	s.mu.Unlock()
	path := filepath.Join(s.dir, "rejected", fmt.Sprintf("%s%020d%s", segPrefix, seq, segSuffix))
	return path, writeFileSync(path, data)
}

func (s *spool) forget(seg segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.segs {
		if s.segs[i].seq == seg.seq {
			s.bytes -= s.segs[i].size
			s.segs = slices.Delete(s.segs, i, i+1)
			return
		}
	}
}

// close seals the overflow segment.
func (s *spool) close() error { return s.sealOverflow() }

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// truncatePartialLine cuts a file after its last newline: what a crash in
// the middle of a write leaves is not a row.
func truncatePartialLine(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end := st.Size()
	buf := make([]byte, 64<<10)
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if n > pos {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil && err != io.EOF {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := pos + int64(i) + 1
			if keep == end {
				return nil
			}
			if err := f.Truncate(keep); err != nil {
				return err
			}
			return f.Sync()
		}
	}
	if end == 0 {
		return nil
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	return f.Sync()
}
