package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate"
)

// Feed subscribes fn to the inbound events of the bus (each message's data,
// a CloudEvent) until stop is called. fn must not block.
type Feed func(fn func(data []byte)) (stop func(), err error)

// Limits of the live view: clients streaming at once, events buffered per
// client (a slower client loses the oldest and is told how many), events
// kept for a client that reconnects (Last-Event-ID), and the largest event
// sent whole (a bigger one is shown cut).
const (
	maxLiveClients = 32
	clientBuffer   = 256
	replayEvents   = 200
	maxLiveJSON    = 64 << 10
)

// liveEvent is one event as the live view sends it.
type liveEvent struct {
	Seq    uint64 `json:"seq"`
	ID     string `json:"id"`
	Source string `json:"source"`
	Event  string `json:"event"`
	Time   string `json:"time"`
	JSON   string `json:"json"` // the redacted CloudEvent, indented
}

// hub fans the bus's inbound events out to the SSE clients.
type hub struct {
	redact func(string) string
	mu     sync.Mutex
	seq    uint64
	recent []liveEvent // ring of the last replayEvents
	subs   map[*client]struct{}
	closed bool
}

type client struct {
	ch      chan liveEvent
	dropped int // under hub.mu
	source  string
	event   string
}

func newHub(redact func(string) string) *hub {
	return &hub{redact: redact, subs: map[*client]struct{}{}}
}

// publish turns a bus message into a liveEvent and hands it to every
// client whose filter it matches, without ever waiting for one.
func (h *hub) publish(data []byte) {
	var ev hookgate.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return // not a CloudEvent: nothing a person can read
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, data, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(data)
	}
	text := pretty.String()
	if len(text) > maxLiveJSON {
		text = hookgate.Truncate(text, maxLiveJSON)
	}
	le := liveEvent{
		ID: h.redact(ev.ID), Source: h.redact(strings.TrimPrefix(ev.Source, "hookgate/")), Event: h.redact(ev.Type),
		Time: ev.Time.UTC().Format(time.RFC3339Nano), JSON: h.redact(text),
	}
	if ev.Data.Event != "" {
		le.Event = h.redact(ev.Data.Event)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.seq++
	le.Seq = h.seq
	if len(h.recent) >= replayEvents {
		copy(h.recent, h.recent[1:])
		h.recent = h.recent[:len(h.recent)-1]
	}
	h.recent = append(h.recent, le)
	for c := range h.subs {
		if !c.matches(le) {
			continue
		}
		select {
		case c.ch <- le:
		default:
			c.dropped++
		}
	}
}

func (c *client) matches(le liveEvent) bool {
	return (c.source == "" || c.source == le.Source) && (c.event == "" || c.event == le.Event)
}

var errTooManyClients = errors.New("console: too many live clients")

// subscribe adds a client; the events after seq `after` that it missed
// (and the hub still holds) are queued first.
func (h *hub) subscribe(source, event string, after uint64) (*client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("console: live view stopped")
	}
	if len(h.subs) >= maxLiveClients {
		return nil, errTooManyClients
	}
	c := &client{ch: make(chan liveEvent, clientBuffer), source: source, event: event}
	if after > 0 {
		for _, le := range h.recent {
			if le.Seq > after && c.matches(le) {
				select {
				case c.ch <- le:
				default:
				}
			}
		}
	}
	h.subs[c] = struct{}{}
	return c, nil
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[c]; ok {
		delete(h.subs, c)
		close(c.ch)
	}
}

// takeDropped returns and resets the count of events c lost.
func (h *hub) takeDropped(c *client) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := c.dropped
	c.dropped = 0
	return n
}

// close ends every stream.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.subs {
		delete(h.subs, c)
		close(c.ch)
	}
}

func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Run feeds the live view from the bus until ctx ends, then ends every
// stream. Without a Feed it only waits.
// A feed that cannot subscribe is logged and tried again every 5 s: the
// live view never takes the gateway down.
func (c *Console) Run(ctx context.Context) error {
	defer c.hub.close()
	if c.cfg.Feed == nil {
		<-ctx.Done()
		return nil
	}
	for {
		stop, err := c.cfg.Feed(c.hub.publish)
		if err == nil {
			defer stop()
			<-ctx.Done()
			return nil
		}
		c.log.Warn("console: live feed unavailable; trying again in 5s", "err", c.cfg.Secrets.Redact(err.Error()))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// stream is GET /console/live/stream: the events as server-sent events.
// A stream ends before the server's write timeout would cut it; the
// browser reconnects (retry: 1 s) with Last-Event-ID and gets what it
// missed.
func (c *Console) stream(ctx *fiber.Ctx) error {
	after, _ := strconv.ParseUint(ctx.Get("Last-Event-ID"), 10, 64)
	cl, err := c.hub.subscribe(clean(ctx.Query("source")), clean(ctx.Query("event")), after)
	if err != nil {
		ctx.Set(fiber.HeaderRetryAfter, "5")
		return ctx.Status(fiber.StatusServiceUnavailable).SendString(err.Error())
	}
	ctx.Set(fiber.HeaderContentType, "text/event-stream")
	ctx.Set(fiber.HeaderCacheControl, "no-store")
	ctx.Set("X-Accel-Buffering", "no")
	life := c.cfg.StreamFor
	h := c.hub
	ctx.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer h.unsubscribe(cl)
		end := time.NewTimer(life)
		defer end.Stop()
		beat := time.NewTicker(min(life/2, 15*time.Second))
		defer beat.Stop()
		fmt.Fprint(w, "retry: 1000\n: hookgate live\n\n")
		if w.Flush() != nil {
			return
		}
		for {
			select {
			case le, ok := <-cl.ch:
				if !ok {
					return
				}
				if n := h.takeDropped(cl); n > 0 {
					fmt.Fprintf(w, "event: dropped\ndata: %d\n\n", n)
				}
				b, _ := json.Marshal(le)
				fmt.Fprintf(w, "id: %d\ndata: %s\n\n", le.Seq, b)
			case <-beat.C:
				fmt.Fprint(w, ": keep-alive\n\n")
			case <-end.C:
				return
			}
			if w.Flush() != nil {
				return // the browser went away
			}
		}
	})
	return nil
}
