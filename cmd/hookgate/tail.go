package main

import (
	"context"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"

	"github.com/hookgate/hookgate/events"
)

// cmdTail prints every event published on SUBJECT (default hookgate.in.>)
// as one JSON line, until interrupted. It connects to the running gateway's
// bus (bus.url, else bus.listen).
func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("tail", stderr)
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	subject := events.InboundSubjects
	if fs.NArg() > 0 {
		subject = fs.Arg(0)
	}
	url := cfg.Bus.URL
	if url == "" {
		url = "nats://" + cfg.Bus.Listen
	}
	bus, err := events.Connect(url, events.WithName("hookgate-tail"))
	if err != nil {
		return fmt.Errorf("%w (is hookgate serve running?)", err)
	}
	defer bus.Close()
	msgs := make(chan *nats.Msg, 4096)
	sub, err := bus.Conn().ChanSubscribe(subject, msgs)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := bus.Conn().Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "tailing %s on %s\n", subject, url)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if _, err := stdout.Write(append(m.Data, '\n')); err != nil {
				return err
			}
		}
	}
}
