// Package events is hookgate's durable bus: NATS JetStream, embedded under
// data_dir by default or an external server (cluster) by URL.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// InboundSubjects is the subject filter of inbound events.
const InboundSubjects = "hookgate.in.>"

// ErrUnavailable means the bus could not store a message.
var ErrUnavailable = errors.New("events: bus unavailable")

// ErrBadSubject means a message was refused before it was sent: its subject
// is over MaxSubject bytes or not a valid subject. NATS closes a connection
// that sends a protocol line over 4 KiB, so such a publish never goes out.
// It comes as a *hookgate.Error with code EBadRequest: the input is at fault.
var ErrBadSubject = errors.New("events: bad subject")

// MaxSubject is the longest subject Publish sends, in bytes: far more than
// hookgate's own subjects (hookgate.MaxSubjectToken bytes a token), far
// less than the server's 4 KiB protocol line.
const MaxSubject = 1024

// Bus is a connection to JetStream, with the embedded server it runs, if any.
type Bus struct {
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	log    *slog.Logger
	// sy fsyncs the stream's blocks for groups of publishes (bus.sync:
	// group), or nil.
	sy *syncer
}

// Option configures Open.
type Option func(*options)

type options struct {
	log        *slog.Logger
	name       string
	noListen   bool
	publishTTL time.Duration
	token      string
	caFile     string
}

// WithToken sets the token a client presents (Connect): the embedded bus
// refuses clients without it (see ReadToken).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS makes Connect use TLS, trusting the certificates in the PEM file
// caFile (the embedded bus's bus.tls.cert_file, or its CA).
func WithTLS(caFile string) Option { return func(o *options) { o.caFile = caFile } }

// WithLogger sets the logger for the bus and the embedded server.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithName sets the NATS connection name.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithoutListener runs an embedded server with no client port, for CLI
// commands that work on a data_dir while no gateway is running.
func WithoutListener() Option { return func(o *options) { o.noListen = true } }

// Open starts the embedded JetStream server under dataDir/jetstream (when
// cfg.URL is empty) or connects to cfg.URL, and makes sure the stream
// cfg.Stream exists.
func Open(ctx context.Context, cfg config.Bus, dataDir string, opts ...Option) (*Bus, error) {
	o := options{log: slog.Default(), name: "hookgate"}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Bus{stream: cfg.Stream, log: o.log}
	var copts []nats.Option
	copts = append(copts, nats.Name(o.name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				o.log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { o.log.Info("bus reconnected") }))
	url := cfg.URL
	if url == "" {
		token, err := LoadOrCreateToken(dataDir)
		if err != nil {
			return nil, err
		}
		srv, err := startEmbedded(cfg, dataDir, token, o)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		copts = append(copts, nats.InProcessServer(srv), nats.Token(token))
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("events: connect %s: %w", url, err)
	}
	b.nc = nc
	js, err := newJetStream(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("events: jetstream: %w", err)
	}
	b.js = js
	if err := b.ensureStream(ctx, cfg); err != nil {
		b.Close()
		return nil, err
	}
	if b.srv != nil && cfg.Sync == "group" {
		b.sy = newSyncer(filepath.Join(dataDir, "jetstream", server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams", cfg.Stream, "msgs"))
	}
	return b, nil
}

// Connect connects to a running bus without creating anything: for CLI
// commands beside a live gateway.
func Connect(url string, opts ...Option) (*Bus, error) {
	o := options{log: slog.Default(), name: "hookgate-cli"}
	for _, opt := range opts {
		opt(&o)
	}
	copts := []nats.Option{nats.Name(o.name), nats.Timeout(2 * time.Second)}
	if o.token != "" {
		copts = append(copts, nats.Token(o.token))
	}
	if o.caFile != "" {
		copts = append(copts, nats.RootCAs(o.caFile))
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		return nil, fmt.Errorf("events: connect %s: %w", url, err)
	}
	js, err := newJetStream(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("events: jetstream: %w", err)
	}
	return &Bus{nc: nc, js: js, log: o.log}, nil
}

func startEmbedded(cfg config.Bus, dataDir, token string, o options) (*server.Server, error) {
	sopts := &server.Options{
		Authorization:      token,
		ServerName:         "hookgate",
		JetStream:          true,
		StoreDir:           filepath.Join(dataDir, "jetstream"),
		SyncAlways:         cfg.Sync == "always",
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if o.noListen {
		sopts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("events: bus.listen %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("events: bus.listen %q: bad port", cfg.Listen)
		}
		// a taken port fails at once, by name (the server would only
		// say it is not ready after its 15 s wait)
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("events: bus.listen %s: %w", cfg.Listen, err)
		}
		l.Close()
		sopts.Host, sopts.Port = host, p
		if cfg.TLS.CertFile != "" {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile})
			if err != nil {
				return nil, fmt.Errorf("events: bus.tls: %w", err)
			}
			sopts.TLSConfig, sopts.TLS = tc, true
		}
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("events: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{o.log}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("events: embedded server not ready (is %s already taken by another process?)", cfg.Listen)
	}
	return srv, nil
}

func (b *Bus) ensureStream(ctx context.Context, cfg config.Bus) error {
	sc := jetstream.StreamConfig{
		Name:       cfg.Stream,
		Subjects:   []string{InboundSubjects},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: cfg.DedupWindow.D(),
		MaxAge:     cfg.MaxAge.D(),
		Replicas:   max(cfg.Replicas, 1),
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("events: stream %s: %w", cfg.Stream, err)
	}
	return nil
}

// Bounds of the asynchronous publishes behind Publish.
const (
	// maxPendingAcks bounds the publishes awaiting JetStream's
	// acknowledgement; a Publish beyond it waits for a slot (up to its
	// context's deadline, at most maxStallWait).
	maxPendingAcks = 512
	maxStallWait   = 5 * time.Second
	// ackTimeout forgets an acknowledgement that never came (its Publish
	// has long returned: its context ended), so that it frees its slot.
	ackTimeout = 30 * time.Second
)

func newJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingAcks),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
}

// Publish stores data on subject with Nats-Msg-Id msgID and waits for
// JetStream's acknowledgement: it returns nil only once the message is
// stored. duplicate reports that a message with the same id was already
// stored within the de-duplication window. Any failure wraps
// ErrUnavailable: nothing was promised stored.
//
// On the wire the publish is asynchronous (one shared reply subscription,
// no request per message), so that concurrent calls share the connection's
// writes and the server's store loop instead of each making its own round
// trip; at most maxPendingAcks wait for their acknowledgement at once
// (docs/performance.md). The bus may keep data until the acknowledgement
// arrives, also after Publish returned on ctx: do not modify it.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, data []byte) (duplicate bool, err error) {
	if len(subject) > MaxSubject || len(msgID) > MaxSubject || strings.ContainsAny(subject, " \t\r\n") {
		return false, hookgate.WrapError(hookgate.EBadRequest, "the event's name cannot be stored",
			fmt.Errorf("%w: %d-byte subject or id", ErrBadSubject, max(len(subject), len(msgID))))
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	stall := maxStallWait
	if d, ok := ctx.Deadline(); ok {
		stall = min(stall, time.Until(d))
	}
	if stall <= 0 {
		return false, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, context.DeadlineExceeded)
	}
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithStallWait(stall))
	if err != nil {
		return false, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, err)
	}
	select {
	case ack := <-f.Ok():
		if b.sy != nil {
			if err := b.sy.wait(ctx); err != nil {
				return false, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, err)
			}
		}
		return ack.Duplicate, nil
	case err := <-f.Err():
		return false, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, err)
	case <-ctx.Done():
		return false, fmt.Errorf("%w: publish %s: %v", ErrUnavailable, subject, ctx.Err())
	}
}

// Check reports whether the bus can store messages (for /readyz).
func (b *Bus) Check(ctx context.Context) error {
	if b.nc == nil || !b.nc.IsConnected() {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// JetStream returns the JetStream handle, for jobs and the admin KV.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn returns the NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Stream is the name of the inbound stream.
func (b *Bus) Stream() string { return b.stream }

// Embedded reports whether this process runs the bus server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// Drain stops new deliveries and flushes what is pending (graceful shutdown).
func (b *Bus) Drain(timeout time.Duration) error {
	if b.nc == nil || b.nc.IsClosed() {
		return nil
	}
	done := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := b.nc.Drain(); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		b.nc.Close()
		return errors.New("events: drain timed out")
	}
}

// Close closes the connection and shuts the embedded server down.
func (b *Bus) Close() error {
	if b.sy != nil {
		b.sy.stop()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	b.shutdownServer()
	return nil
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// serverLogger routes the embedded server's log to slog; notices are debug.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(f string, v ...any) { s.l.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Warnf(f string, v ...any)   { s.l.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Fatalf(f string, v ...any)  { s.l.Error("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Errorf(f string, v ...any)  { s.l.Error("nats: " + fmt.Sprintf(f, v...)) }
func (s serverLogger) Debugf(f string, v ...any)  {}
func (s serverLogger) Tracef(f string, v ...any)  {}

// Unavailable converts a bus error into the gateway's 503 error.
func Unavailable(err error) error {
	return hookgate.WrapError(hookgate.EUnavailable, "the event bus cannot store the event", err)
}
