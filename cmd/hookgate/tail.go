package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/events"
)

// cmdTail prints every event stored on SUBJECT (default hookgate.in.>) from
// now on, one JSON line each, until interrupted. It reads the stream, not
// the bare subject, so it prints what JetStream stored: a redelivered
// webhook de-duplicated by the bus is not printed twice. It connects to the
// running gateway's bus (bus.url, else bus.listen).
func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("tail", stderr)
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	subject := events.InboundSubjects
	if fs.NArg() > 0 {
		subject = fs.Arg(0)
	}
	bus, err := connectBus(cfg, "hookgate-tail")
	if err != nil {
		return fmt.Errorf("%w (is hookgate serve running?)", err)
	}
	defer bus.Close()
	cons, err := bus.JetStream().OrderedConsumer(ctx, cfg.Bus.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("tail %s on stream %s: %w", subject, cfg.Bus.Stream, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	defer msgs.Stop()
	go func() { <-ctx.Done(); msgs.Stop() }()
	fmt.Fprintf(stderr, "tailing %s on %s\n", subject, bus.Conn().ConnectedUrlRedacted())
	for {
		m, err := msgs.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		if _, err := stdout.Write(append(m.Data(), '\n')); err != nil {
			return err
		}
	}
}
