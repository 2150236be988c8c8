package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/events"
)

const tailUsage = `usage: hookgate tail [--config FILE] [--since 10m | --all] [SOURCE [EVENT] | SUBJECT]

Print the events stored on the bus, one CloudEvent JSON line each, until
interrupted. By default only events stored after tail starts are printed;
--since and --all print stored ones first.

  tail                      every event (hookgate.in.>)
  tail ci                   the events of source ci (hookgate.in.ci.>)
  tail ci ONCRMDEALADD      source ci, event ONCRMDEALADD; "*" matches any
  tail 'hookgate.in.*.ONCRMDEALADD'   a NATS subject pattern as it is

Source and event are made subject tokens the way the gateway makes them:
characters other than letters, digits, '-' and '_' become '_'
(ci.build.finished -> ci_build_finished), a name over 128 bytes is cut
and ends with a hash.

flags:
`

// cmdTail prints the events stored on a subject (default hookgate.in.>),
// one JSON line each, until interrupted. It reads the stream, not the bare
// subject, so it prints what JetStream stored: a redelivered webhook
// de-duplicated by the bus is not printed twice. It connects to the running
// gateway's bus (bus.url, else bus.listen).
func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("tail", stderr)
	since := fs.Duration("since", 0, "first print the events stored in this last period (e.g. 10m)")
	all := fs.Bool("all", false, "first print every event the stream holds")
	pos, err := parseUsage(fs, args, tailUsage, stdout, stderr, func(pos []string) bool {
		return len(pos) <= 2 && !(*all && *since != 0) && *since >= 0
	})
	if err != nil {
		return parseExit(err)
	}
	subject := tailSubject(pos)
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	bus, err := connectBus(cfg, "hookgate-tail")
	if err != nil {
		return fmt.Errorf("%w (is hookgate serve running?)", err)
	}
	defer bus.Close()
	js := bus.JetStream()

	cc := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	from := "new events"
	switch {
	case *all:
		cc.DeliverPolicy, from = jetstream.DeliverAllPolicy, "every stored event, then new ones"
	case *since > 0:
		start := time.Now().Add(-*since)
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		from = fmt.Sprintf("events stored since %s, then new ones", start.UTC().Format(time.RFC3339))
	}
	if subject != events.InboundSubjects { // a narrower pattern may be a typo
		if note := tailMatchNote(ctx, js, cfg.Bus.Stream, subject); note != "" {
			fmt.Fprintln(stderr, note)
		}
	}
	cons, err := js.OrderedConsumer(ctx, cfg.Bus.Stream, cc)
	if err != nil {
		return fmt.Errorf("tail %s on stream %s: %w", subject, cfg.Bus.Stream, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	defer msgs.Stop()
	go func() { <-ctx.Done(); msgs.Stop() }()
	fmt.Fprintf(stderr, "tailing %s on %s (%s)\n", subject, bus.Conn().ConnectedUrlRedacted(), from)
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

// tailSubject turns tail's arguments into a subject pattern: none is every
// inbound event; an argument starting with "hookgate." is a NATS pattern
// used as it is; otherwise the arguments are a source id and an optional
// event name, made subject tokens as the gateway makes them ("*" and ">"
// stay wildcards).
func tailSubject(args []string) string {
	switch {
	case len(args) == 0:
		return events.InboundSubjects
	case len(args) == 1 && strings.HasPrefix(args[0], "hookgate."):
		return args[0]
	}
	token := func(s string) string {
		if s == "*" || s == ">" {
			return s
		}
		return hookgate.SubjectToken(s)
	}
	if len(args) == 1 {
		if args[0] == ">" {
			return events.InboundSubjects
		}
		return "hookgate.in." + token(args[0]) + ".>"
	}
	return "hookgate.in." + token(args[0]) + "." + token(args[1])
}

// tailMatchNote says when no subject the stream holds matches the pattern,
// listing a few that it does hold, so that a typo is not a silent wait.
// It is empty when something matches (or the stream cannot be read: the
// consumer's error says why).
func tailMatchNote(ctx context.Context, js jetstream.JetStream, stream, subject string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return ""
	}
	if len(info.State.Subjects) > 0 {
		return ""
	}
	note := fmt.Sprintf("hookgate tail: no stored event matches %s; waiting for new ones", subject)
	info, err = s.Info(ctx, jetstream.WithSubjectFilter(events.InboundSubjects))
	if err != nil || len(info.State.Subjects) == 0 {
		return note + " (the stream holds no event yet)"
	}
	held := slices.Sorted(maps.Keys(info.State.Subjects))
	const most = 10
	more := ""
	if len(held) > most {
		held, more = held[:most], fmt.Sprintf(", … (%d more)", len(info.State.Subjects)-most)
	}
	return note + "; the stream holds " + strings.Join(held, ", ") + more
}
