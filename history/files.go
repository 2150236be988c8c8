package history

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookgate/hookgate"
)

// fileSink is the embedded default: NDJSON files under <data_dir>/history,
// one JSONEachRow line per row, named exchanges-YYYYMMDD-NNNN.ndjson (UTC
// day of writing, then a sequence) so that names sort in time order. A file
// is rotated when it would pass history.file_max_bytes or the day changes.
// Each start opens a new file; the previous last file is first cut after
// its last whole line, so that a crash never leaves a line ClickHouse
// cannot read.
type fileSink struct {
	dir       string
	maxBytes  int64
	retention time.Duration // files of days older than this are removed; 0 = keep
	now       func() time.Time

	mu   sync.Mutex
	f    *os.File
	bw   *bufio.Writer
	day  string
	seq  int
	size int64
	buf  []byte
}

const filePrefix = "exchanges-"

// maxNameTries bounds the retries of a file name taken by another process.
const maxNameTries = 1000

func openFileSink(dir string, maxBytes int64, retention time.Duration, now func() time.Time) (*fileSink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("history: files dir: %w", err)
	}
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	if n := len(files); n > 0 {
		if err := truncatePartialLine(files[n-1]); err != nil {
			return nil, fmt.Errorf("history: repair %s: %w", files[n-1], err)
		}
	}
	s := &fileSink{dir: dir, maxBytes: maxBytes, retention: retention, now: now}
	s.expire()
	return s, nil
}

// expire removes the files of days wholly older than the retention
// (history.retention, as the ClickHouse TTL does for the table).
func (s *fileSink) expire() {
	if s.retention <= 0 {
		return
	}
	files, err := Files(s.dir)
	if err != nil {
		return
	}
	cutoff := s.now().UTC().Add(-s.retention).Format("20060102")
	for _, f := range files {
		day, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(f), filePrefix), "-")
		if ok && day < cutoff {
			os.Remove(f)
		}
	}
}

// Files lists the NDJSON history files in dir, oldest first.
func Files(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, filePrefix+"*.ndjson"))
	if err != nil {
		return nil, err
	}
	sort.Strings(m)
	return m, nil
}

// nextSeq is one more than the highest sequence of day's files.
func (s *fileSink) nextSeq(day string) int {
	m, _ := filepath.Glob(filepath.Join(s.dir, filePrefix+day+"-*.ndjson"))
	top := 0
	for _, p := range m {
		num := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), filePrefix+day+"-"), ".ndjson")
		if n, err := strconv.Atoi(num); err == nil {
			top = max(top, n)
		}
	}
	return top + 1
}

func (s *fileSink) rotate(day string) error {
	if err := s.closeFile(); err != nil {
		return err
	}
	seq := s.seq + 1
	if day != s.day {
		seq = s.nextSeq(day)
		s.expire()
	} else {
		seq = max(seq, s.nextSeq(day))
	}
	// Another process writing into the same directory (two standalone
	// `hookgate call`s on one data_dir) may take the same number between
	// nextSeq and the open: take the next free one.
	var f *os.File
	for tries := 0; ; tries++ {
		name := filepath.Join(s.dir, fmt.Sprintf("%s%s-%04d.ndjson", filePrefix, day, seq))
		var err error
		f, err = os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || tries == maxNameTries {
			return fmt.Errorf("history: %w", err) // *PathError names the file
		}
		seq = max(seq+1, s.nextSeq(day))
	}
	syncDir(s.dir)
	s.f, s.bw, s.day, s.seq, s.size = f, bufio.NewWriterSize(f, 64<<10), day, seq, 0
	return nil
}

// write appends rows (buffered; sync makes them durable).
func (s *fileSink) write(rows []hookgate.Exchange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range rows {
		var err error
		s.buf, err = AppendJSONEachRow(s.buf[:0], &rows[i])
		if err != nil {
			return fmt.Errorf("history: encode row: %w", err)
		}
		day := s.now().UTC().Format("20060102")
		if s.f == nil || day != s.day || s.maxBytes > 0 && s.size > 0 && s.size+int64(len(s.buf)) > s.maxBytes {
			if err := s.rotate(day); err != nil {
				return err
			}
		}
		if _, err := s.bw.Write(s.buf); err != nil {
			return fmt.Errorf("history: write %s: %w", s.f.Name(), err)
		}
		s.size += int64(len(s.buf))
	}
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
	return nil
}

// sync flushes and fsyncs the current file.
func (s *fileSink) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("history: write %s: %w", s.f.Name(), err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("history: sync %s: %w", s.f.Name(), err)
	}
	return nil
}

func (s *fileSink) closeFile() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	err := s.bw.Flush()
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("history: close %s: %w", f.Name(), err)
	}
	return nil
}

func (s *fileSink) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeFile()
}
