// Package history records every exchange (SPEC.md, "History"): the
// ClickHouse schema and its migrations, an asynchronous batched Writer with
// an on-disk spool for ClickHouse outages, and the embedded default of
// NDJSON files when no ClickHouse is configured.
//
// Delivery is at least once and, in practice, exactly once: a spooled batch
// is deleted only after ClickHouse accepted it, and a batch whose insert
// was attempted before (it may have landed although the client saw an
// error, or the process died between the insert and the delete) is first
// checked against the table by exchange_id, so its rows are not inserted
// twice. What is lost on SIGKILL: the rows still in memory, at most one
// flush interval's worth (or a queue's worth when ClickHouse is slow);
// rows that reached the spool are kept.
//
// Order: batches go to ClickHouse in the order they were made; while the
// spool holds rows, new batches join its end instead of overtaking it. Rows
// that overflow a full queue go to the spool at once and may land before
// rows still queued; ts, not insertion order, is the order of the table.
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// DefaultDatabase is the history database when config leaves it empty.
const DefaultDatabase = "hookgate"

// Results passed to the observer (WithObserver), with the number of rows.
const (
	ResultWritten  = "written"  // inserted into ClickHouse, or written to an NDJSON file
	ResultSpooled  = "spooled"  // put in the on-disk spool (ClickHouse down, or the queue full)
	ResultReplayed = "replayed" // inserted into ClickHouse from the spool
	ResultSkipped  = "skipped"  // spooled rows found already in ClickHouse on replay
	ResultRejected = "rejected" // refused by ClickHouse as bad data; kept in spool/rejected
	ResultDropped  = "dropped"  // lost: spool full, disk error, bad row, writer closed
)

// ErrClickHouseDown is reported (wrapped) by Writer.Healthy when ClickHouse
// has failed for longer than the down grace (WithDownGrace). Rows are being
// spooled, not lost.
var ErrClickHouseDown = errors.New("history: clickhouse unavailable")

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("history: writer closed")

type options struct {
	logger          *slog.Logger
	now             func() time.Time
	observe         func(result string, n int)
	spoolGauge      func(bytes int64)
	redact          func(string) string
	queueRows       int
	queueBytes      int64
	minBackoff      time.Duration
	maxBackoff      time.Duration
	downGrace       time.Duration
	insertTimeout   time.Duration
	shutdownTimeout time.Duration
	dialTimeout     time.Duration
}

// Option configures a Writer.
type Option func(*options)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock used for missing timestamps, file rotation and
// health.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithObserver sets a function told how many rows met each result
// (ResultWritten, ResultSpooled, ...); wire it to a metric. It is called
// from the writer's goroutines and Record, and must not block.
func WithObserver(f func(result string, n int)) Option { return func(o *options) { o.observe = f } }

// WithSpoolGauge sets a function told the spool's size in bytes whenever it
// changes.
func WithSpoolGauge(f func(bytes int64)) Option { return func(o *options) { o.spoolGauge = f } }

// WithRedact sets a last-line redaction applied to url, request_headers,
// request_body, response_body and error before a row is stored, e.g.
// (*hookgate.Redactor).Redact with the configured secret values.
func WithRedact(f func(string) string) Option { return func(o *options) { o.redact = f } }

// WithQueue bounds the in-memory queue by rows and by bytes (defaults: 2 ×
// batch_rows, 64 MiB). Rows beyond it go straight to the spool (or file).
func WithQueue(rows int, bytes int64) Option {
	return func(o *options) { o.queueRows, o.queueBytes = rows, bytes }
}

// WithBackoff sets the wait between attempts while ClickHouse fails
// (doubling from min to max; defaults 500ms and 30s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithDownGrace sets how long ClickHouse may fail before Healthy reports
// ErrClickHouseDown (default 1 minute).
func WithDownGrace(d time.Duration) Option { return func(o *options) { o.downGrace = d } }

// WithTimeouts sets the dial timeout, the timeout of one insert and the
// time the final flush may take when Run's context ends (defaults 5s, 30s,
// 10s).
func WithTimeouts(dial, insert, shutdown time.Duration) Option {
	return func(o *options) { o.dialTimeout, o.insertTimeout, o.shutdownTimeout = dial, insert, shutdown }
}

// Writer records exchanges into ClickHouse (or NDJSON files) in batches.
// It implements hookgate.Recorder. Start Run in a goroutine; call Close when
// Run has returned.
type Writer struct {
	cfg      config.History
	database string
	o        options
	log      *slog.Logger

	conn  driver.Conn // nil: NDJSON files
	spool *spool      // with conn
	files *fileSink   // without conn

	queue   chan hookgate.Exchange
	queued  atomic.Int64 // bytes in the queue and in the batch being flushed
	dropped atomic.Int64
	kick    chan struct{}

	closeMu sync.RWMutex
	closed  bool

	flushMu  sync.Mutex // one flush at a time; guards the fields below
	migrated bool
	backoff  time.Duration
	nextTry  time.Time

	stateMu   sync.Mutex
	downSince time.Time
	lastErr   error
	spoolFull bool
	fileErr   error
}

var _ hookgate.Recorder = (*Writer)(nil)

// Open returns a clickhouse-go connection (native protocol) to the history
// database of cfg. No connection is made until it is used.
func Open(cfg config.History, password string) (driver.Conn, error) {
	return open(cfg, password, 5*time.Second)
}

func open(cfg config.History, password string, dial time.Duration) (driver.Conn, error) {
	if len(cfg.ClickHouse.Addr) == 0 {
		return nil, errors.New("history: no clickhouse address configured")
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol: clickhouse.Native,
		Addr:     cfg.ClickHouse.Addr,
		Auth: clickhouse.Auth{
			Database: "default",
			Username: cfg.ClickHouse.Username,
			Password: password,
		},
		DialTimeout:     dial,
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ConnMaxLifetime: time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("history: open clickhouse: %w", err)
	}
	return conn, nil
}

// New returns a Writer for cfg. With cfg.ClickHouse.Addr set it writes to
// ClickHouse, spooling under <dataDir>/history/spool (a spool left by an
// earlier process is replayed first); without, it writes NDJSON files under
// <dataDir>/history. password is the ClickHouse password (the resolved
// secret). New does not reach ClickHouse: the schema is migrated before
// the first insert, whenever ClickHouse is up.
func New(ctx context.Context, cfg config.History, dataDir string, password string, opts ...Option) (*Writer, error) {
	if cfg.BatchRows <= 0 {
		return nil, errors.New("history: batch_rows must be positive")
	}
	if cfg.FlushInterval <= 0 {
		return nil, errors.New("history: flush_interval must be positive")
	}
	o := options{
		logger: slog.Default(), now: time.Now,
		queueRows: 2 * cfg.BatchRows, queueBytes: 64 << 20,
		minBackoff: 500 * time.Millisecond, maxBackoff: 30 * time.Second,
		downGrace: time.Minute, dialTimeout: 5 * time.Second,
		insertTimeout: 30 * time.Second, shutdownTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	w := &Writer{
		cfg: cfg, database: cfg.ClickHouse.Database, o: o,
		log:   o.logger.With("component", "history"),
		queue: make(chan hookgate.Exchange, max(o.queueRows, 1)),
		kick:  make(chan struct{}, 1),
	}
	if w.database == "" {
		w.database = DefaultDatabase
	}
	dir := filepath.Join(dataDir, "history")
	var err error
	if len(cfg.ClickHouse.Addr) == 0 {
		w.files, err = openFileSink(dir, cfg.FileMaxBytes, cfg.Retention.D(), o.now)
		if err != nil {
			return nil, err
		}
		return w, nil
	}
	if w.spool, err = openSpool(filepath.Join(dir, "spool"), cfg.SpoolMaxBytes); err != nil {
		return nil, err
	}
	if w.conn, err = open(cfg, password, o.dialTimeout); err != nil {
		return nil, err
	}
	if n := w.spool.size(); n > 0 {
		w.log.Info("history spool found, replaying when clickhouse is up", "bytes", n)
	}
	w.gauge()
	return w, nil
}

// Conn returns the ClickHouse connection (nil when writing NDJSON files).
func (w *Writer) Conn() driver.Conn { return w.conn }

// Record queues x for history. It never waits on I/O to ClickHouse: when
// the queue is full the row goes straight to the spool (or NDJSON file).
// It fills an empty exchange_id, ts and attempt; WithRedact and
// history.max_body_bytes are applied by the writer's goroutine, off the
// request path, before the row is written anywhere.
func (w *Writer) Record(x hookgate.Exchange) {
	if err := normalize(&x, w.o.now); err != nil {
		w.drop(1, err)
		return
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		w.drop(1, ErrClosed)
		return
	}
	size := rowSize(&x)
	if w.queued.Add(size) <= w.o.queueBytes {
		select {
		case w.queue <- x:
			if len(w.queue) >= w.cfg.BatchRows || w.queued.Load() >= w.batchBytes() {
				select {
				case w.kick <- struct{}{}:
				default:
				}
			}
			return
		default:
		}
	}
	w.queued.Add(-size)
	w.overflow(&x)
}

// clean applies WithRedact and history.max_body_bytes to a row.
func (w *Writer) clean(x *hookgate.Exchange) { clean(x, w.o.redact, w.cfg.MaxBodyBytes) }

// batchBytes bounds one insert by size as batch_rows bounds it by rows:
// half the queue's byte bound (32 MiB by default), so that large bodies do
// not make huge batches.
func (w *Writer) batchBytes() int64 { return max(w.o.queueBytes/2, 1) }

// overflow stores a row that found the queue full.
func (w *Writer) overflow(x *hookgate.Exchange) {
	w.clean(x)
	if w.files != nil {
		if err := w.files.write([]hookgate.Exchange{*x}); err != nil {
			w.fileFailed(err)
			w.drop(1, err)
			return
		}
		w.observe(ResultWritten, 1)
		return
	}
	if err := w.spool.appendOverflow(x); err != nil {
		w.spoolFailed(err, 1)
		return
	}
	w.observe(ResultSpooled, 1)
	w.gauge()
}

// Run flushes at batch_rows or flush_interval until ctx ends, then makes a
// final flush (bounded by the shutdown timeout; what cannot reach
// ClickHouse goes to the spool) and returns.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.FlushInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.shutdownTimeout)
			err := w.flush(fctx, true)
			cancel()
			if err != nil {
				w.log.Warn("history final flush incomplete: rows left in the spool for the next start", "err", err)
			}
			return nil
		case <-t.C:
			w.flush(ctx, false)
		case <-w.kick:
			w.flush(ctx, false)
		}
	}
}

// Flush writes every queued row now, replaying the spool first. It returns
// an error when rows remain in the spool (ClickHouse unavailable).
func (w *Writer) Flush(ctx context.Context) error {
	w.closeMu.RLock()
	closed := w.closed
	w.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	return w.flush(ctx, true)
}

// Close flushes what is queued, seals the spool, closes files and the
// connection. Call it after Run returned. Rows recorded after Close are
// dropped (and counted).
func (w *Writer) Close(ctx context.Context) error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return nil
	}
	w.closed = true
	w.closeMu.Unlock()
	err := w.flush(ctx, true)
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.spool != nil {
		err = errors.Join(err, w.spool.close())
	}
	if w.files != nil {
		err = errors.Join(err, w.files.close())
	}
	if w.conn != nil {
		err = errors.Join(err, w.conn.Close())
	}
	return err
}

// Healthy reports whether history is being kept: an error wrapping
// ErrSpoolFull when rows are being dropped because the spool is at
// history.spool_max_bytes, ErrClickHouseDown when ClickHouse has failed for
// longer than the down grace (rows are spooled meanwhile), or the error of
// an NDJSON file that cannot be written.
func (w *Writer) Healthy() error {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	if w.spoolFull {
		return fmt.Errorf("%w: rows are being dropped (spool_max_bytes %d)", ErrSpoolFull, w.cfg.SpoolMaxBytes)
	}
	if w.fileErr != nil {
		return w.fileErr
	}
	if !w.downSince.IsZero() && w.o.now().Sub(w.downSince) >= w.o.downGrace {
		return fmt.Errorf("%w since %s: %w", ErrClickHouseDown, w.downSince.UTC().Format(time.RFC3339), w.lastErr)
	}
	return nil
}

// SpoolBytes is the size of the spool on disk.
func (w *Writer) SpoolBytes() int64 {
	if w.spool == nil {
		return 0
	}
	return w.spool.size()
}

// flush drains the queue in batches. final ignores the backoff: one more
// attempt at ClickHouse before rows are left in the spool.
func (w *Writer) flush(ctx context.Context, final bool) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.files != nil {
		return w.flushFiles()
	}
	if err := w.spool.sealOverflow(); err != nil {
		w.log.Error("history overflow segment not sealed; it is recovered on the next start", "err", err)
	}
	batch := make([]hookgate.Exchange, 0, min(w.cfg.BatchRows, max(len(w.queue), 1)))
	for {
		batch = batch[:0]
		var n int64
		full := false
	drain:
		for !full {
			select {
			case x := <-w.queue:
				n += rowSize(&x) // as counted by Record, before clean
				w.clean(&x)
				batch = append(batch, x)
				full = len(batch) >= w.cfg.BatchRows || n >= w.batchBytes()
			default:
				break drain
			}
		}
		w.replay(ctx, final)
		w.send(ctx, batch, final)
		w.queued.Add(-n)
		if !full {
			break
		}
	}
	if w.spool.pending() {
		w.stateMu.Lock()
		err := w.lastErr
		w.stateMu.Unlock()
		if err == nil {
			err = ErrClickHouseDown
		}
		return fmt.Errorf("history: %d bytes left in the spool: %w", w.spool.size(), err)
	}
	return nil
}

func (w *Writer) flushFiles() error {
	var batch []hookgate.Exchange
	var n int64
	for {
		select {
		case x := <-w.queue:
			n += rowSize(&x)
			w.clean(&x)
			batch = append(batch, x)
			if len(batch) < w.cfg.BatchRows {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			break
		}
		if err := w.files.write(batch); err != nil {
			w.fileFailed(err)
			w.drop(len(batch), err)
		} else {
			w.observe(ResultWritten, len(batch))
		}
		w.queued.Add(-n)
		batch, n = batch[:0], 0
	}
	if err := w.files.sync(); err != nil {
		w.fileFailed(err)
		return err
	}
	w.stateMu.Lock()
	w.fileErr = nil
	w.stateMu.Unlock()
	return nil
}

// send inserts a batch, or spools it when sealed segments are still in the
// spool (a batch does not overtake rows spooled before it) or ClickHouse
// is in backoff. Rows that overflowed a full queue into the open segment
// do not hold the batch back: they are newer than most of it, and
// spooling every batch behind them would make a writer that is behind
// encode, fsync and decode each row on top of inserting it.
func (w *Writer) send(ctx context.Context, batch []hookgate.Exchange, final bool) {
	if len(batch) == 0 {
		return
	}
	if w.spool.sealedPending() || !w.mayTry(final) {
		w.toSpool(batch, false)
		return
	}
	err := w.insert(ctx, batch)
	switch {
	case err == nil:
		w.succeeded()
		w.observe(ResultWritten, len(batch))
	case permanent(err):
		w.succeeded() // ClickHouse answered
		path, werr := w.spool.writeRejected(batch)
		if werr != nil {
			w.drop(len(batch), fmt.Errorf("clickhouse rejected the batch (%w) and it could not be kept: %w", err, werr))
			return
		}
		w.log.Error("history batch rejected by clickhouse, kept for an operator", "rows", len(batch), "file", path, "err", err)
		w.observe(ResultRejected, len(batch))
	default:
		w.failed(ctx, err)
		w.toSpool(batch, true)
	}
}

func (w *Writer) toSpool(batch []hookgate.Exchange, tried bool) {
	if err := w.spool.write(batch, tried); err != nil {
		w.spoolFailed(err, len(batch))
		return
	}
	w.observe(ResultSpooled, len(batch))
	w.gauge()
}

// replay sends spooled segments, oldest first, until one fails.
func (w *Writer) replay(ctx context.Context, final bool) {
	for {
		seg, ok := w.spool.oldest()
		if !ok || !w.mayTry(final) {
			return
		}
		rows, bad, err := w.spool.read(seg)
		if err != nil {
			w.log.Error("history spool segment unreadable, moved to rejected", "seq", seg.seq, "err", err)
			w.spool.reject(seg)
			continue
		}
		if bad > 0 {
			w.drop(bad, fmt.Errorf("spool segment %d: %d lines unreadable", seg.seq, bad))
		}
		skipped := 0
		if seg.tried {
			fresh, err := w.notInClickHouse(ctx, rows)
			if err != nil {
				w.failed(ctx, err)
				return
			}
			skipped, rows = len(rows)-len(fresh), fresh
		} else if seg, err = w.spool.markTried(seg); err != nil {
			w.log.Error("history spool", "err", err)
			return
		}
		if len(rows) > 0 {
			if err := w.insert(ctx, rows); err != nil {
				if permanent(err) {
					w.succeeded()
					w.log.Error("history spool segment rejected by clickhouse, moved to rejected", "seq", seg.seq, "rows", len(rows), "err", err)
					w.observe(ResultRejected, len(rows))
					w.spool.reject(seg)
					w.clearSpoolFull()
					continue
				}
				w.failed(ctx, err)
				return
			}
		}
		if err := w.spool.remove(seg); err != nil {
			w.log.Error("history spool", "err", err)
			return
		}
		w.succeeded()
		w.clearSpoolFull()
		w.observe(ResultReplayed, len(rows))
		if skipped > 0 {
			w.observe(ResultSkipped, skipped)
		}
		w.gauge()
		if w.spool.size() == 0 {
			w.log.Info("history spool replayed")
		}
	}
}

// insert sends rows in one batch with an explicit column list, migrating
// the schema first if this writer has not yet.
func (w *Writer) insert(ctx context.Context, rows []hookgate.Exchange) error {
	// An insert under way is not cancelled with ctx (shutdown): cut off
	// mid-send, ClickHouse may still store the rows while the writer,
	// seeing an error, spools them, and the immediate replay would not
	// see them yet: duplicates. It is bounded by the insert timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.insertTimeout)
	defer cancel()
	if !w.migrated {
		if err := Migrate(ctx, w.conn, w.database, w.cfg.Retention.D()); err != nil {
			return err
		}
		w.migrated = true
	}
	b, err := w.conn.PrepareBatch(ctx, InsertQuery(w.database))
	if err != nil {
		return fmt.Errorf("history: prepare insert: %w", err)
	}
	var block int64
	vals := make([]any, len(columns))
	for i := range rows {
		x := &rows[i]
		// One INSERT, sent as blocks of about blockBytes: the client's
		// column buffers are reused from block to block instead of
		// growing to the whole batch (memory and copying), and the
		// server squashes the blocks back into one part
		// (min_insert_block_size_*).
		if block >= blockBytes {
			if err := b.Flush(); err != nil {
				b.Abort()
				return fmt.Errorf("history: insert %d rows: send block: %w", len(rows), err)
			}
			block = 0
		}
		block += rowSize(x)
		for j := range columns {
			vals[j] = columns[j].value(x)
		}
		if err := b.Append(vals...); err != nil {
			b.Abort()
			return fmt.Errorf("history: append row %s: %w", x.ExchangeID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("history: insert %d rows: %w", len(rows), err)
	}
	return nil
}

// blockBytes is the size of the blocks an insert is sent in.
const blockBytes = 1 << 20

// InsertQuery is the INSERT of the writer: the table's columns named, as
// ClickHouse 18.16 needs.
func InsertQuery(database string) string {
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", quoteIdent(database), Table, strings.Join(Columns, ", "))
}

// notInClickHouse returns the rows whose exchange_id is not in the table
// yet. The query narrows by direction, source and ts: the table's sort key.
func (w *Writer) notInClickHouse(ctx context.Context, rows []hookgate.Exchange) ([]hookgate.Exchange, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.insertTimeout)
	defer cancel()
	if !w.migrated {
		if err := Migrate(ctx, w.conn, w.database, w.cfg.Retention.D()); err != nil {
			return nil, err
		}
		w.migrated = true
	}
	present := map[string]bool{}
	const chunk = 1000
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		lo, hi := part[0].TS, part[0].TS
		dirs, sources, ids := map[string]bool{}, map[string]bool{}, make([]string, 0, len(part))
		for i := range part {
			x := &part[i]
			if x.TS.Before(lo) {
				lo = x.TS
			}
			if x.TS.After(hi) {
				hi = x.TS
			}
			dirs[x.Direction.String()] = true
			sources[x.Source] = true
			ids = append(ids, "'"+strings.ToLower(x.ExchangeID)+"'")
		}
		q := fmt.Sprintf("SELECT toString(exchange_id) FROM %s.%s WHERE direction IN (%s) AND source IN (%s) AND ts >= toDateTime(%d) AND ts <= toDateTime(%d) AND toString(exchange_id) IN (%s)",
			quoteIdent(w.database), Table, sqlList(dirs), sqlList(sources), lo.Unix(), hi.Unix()+1, strings.Join(ids, ","))
		r, err := w.conn.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("history: check spooled rows: %w", err)
		}
		for r.Next() {
			var id string
			if err := r.Scan(&id); err != nil {
				r.Close()
				return nil, fmt.Errorf("history: check spooled rows: %w", err)
			}
			present[id] = true
		}
		err = r.Err()
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("history: check spooled rows: %w", err)
		}
	}
	if len(present) == 0 {
		return rows, nil
	}
	out := rows[:0:0]
	for _, x := range rows {
		if !present[strings.ToLower(x.ExchangeID)] {
			out = append(out, x)
		}
	}
	return out, nil
}

func sqlList(set map[string]bool) string {
	parts := make([]string, 0, len(set))
	for s := range set {
		parts = append(parts, "'"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)+"'")
	}
	return strings.Join(parts, ",")
}

// permanent reports whether ClickHouse refused the data itself (parse and
// type errors): sending the same rows again would fail again.
func permanent(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 6, 27, 38, 41, 53, 69, 70, 72, 117, 131:
		// CANNOT_PARSE_TEXT, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
		// CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, TYPE_MISMATCH,
		// ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE,
		// CANNOT_PARSE_NUMBER, INCORRECT_DATA, TOO_LARGE_STRING_SIZE
		return true
	}
	return false
}

func (w *Writer) mayTry(final bool) bool {
	return final || !w.o.now().Before(w.nextTry)
}

// failed notes a failed attempt at ClickHouse and backs off.
func (w *Writer) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // shutting down, not a ClickHouse failure
	}
	w.backoff = min(max(2*w.backoff, w.o.minBackoff), w.o.maxBackoff)
	now := w.o.now()
	w.nextTry = now.Add(w.backoff)
	w.migrated = false // check the schema again when it is back
	w.stateMu.Lock()
	first := w.downSince.IsZero()
	if first {
		w.downSince = now
	}
	w.lastErr = err
	w.stateMu.Unlock()
	if first {
		w.log.Warn("history: clickhouse unavailable, spooling rows", "err", err)
	}
}

// succeeded notes that ClickHouse answered.
func (w *Writer) succeeded() {
	w.backoff, w.nextTry = 0, time.Time{}
	w.stateMu.Lock()
	was := w.downSince
	w.downSince, w.lastErr = time.Time{}, nil
	w.stateMu.Unlock()
	if !was.IsZero() {
		w.log.Info("history: clickhouse available again", "down_for", w.o.now().Sub(was).Round(time.Millisecond))
	}
}

func (w *Writer) spoolFailed(err error, n int) {
	if errors.Is(err, ErrSpoolFull) {
		w.stateMu.Lock()
		first := !w.spoolFull
		w.spoolFull = true
		w.stateMu.Unlock()
		if first {
			w.log.Error("history: SPOOL FULL, rows are being dropped until clickhouse is back",
				"spool_max_bytes", w.cfg.SpoolMaxBytes, "spool_bytes", w.spool.size())
		}
		w.dropQuiet(n)
		return
	}
	w.drop(n, err)
}

func (w *Writer) clearSpoolFull() {
	w.stateMu.Lock()
	was := w.spoolFull
	w.spoolFull = false
	w.stateMu.Unlock()
	if was {
		w.log.Warn("history: spool has room again", "dropped_total", w.Dropped())
	}
}

func (w *Writer) fileFailed(err error) {
	w.stateMu.Lock()
	w.fileErr = err
	w.stateMu.Unlock()
}

// drop counts and logs rows that could not be kept.
func (w *Writer) drop(n int, err error) {
	w.log.Error("history: rows dropped", "rows", n, "err", err)
	w.dropQuiet(n)
}

func (w *Writer) dropQuiet(n int) {
	w.dropped.Add(int64(n))
	w.observe(ResultDropped, n)
}

// Dropped is the number of rows this writer could not keep.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

func (w *Writer) observe(result string, n int) {
	if w.o.observe != nil && n > 0 {
		w.o.observe(result, n)
	}
}

func (w *Writer) gauge() {
	if w.o.spoolGauge != nil && w.spool != nil {
		w.o.spoolGauge(w.spool.size())
	}
}
