package bitrix24test

// What a two-way sync needs from the simulator (issue 18): writes stamped
// with MODIFY_BY_ID and DATE_MODIFY, CRM events sent to a handler the way
// a portal's outgoing webhook sends them (and a share of them dropped),
// changes made "by a user" directly in the portal, a fault that commits
// a write and then loses its answer, and date-aware filters.

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultUserID is the user a direct change (Change) is made by: a person
// in the portal, not the webhook's user.
const DefaultUserID = "7"

// EventHandler is where the simulator sends CRM events: an outgoing
// webhook's handler URL and its application token.
type EventHandler struct {
	URL   string
	Token string
	// Drop is the share of events never sent (0..1), spread evenly:
	// with 0.1 every tenth event is dropped.
	Drop float64
	// Domain is auth[domain] (default "sim.bitrix24.test").
	Domain string
}

// WithEventHandler makes the simulator send ONCRM<ENTITY>ADD / UPDATE for
// every add and update (REST calls outside batch, and Change) to h, in
// order, from one goroutine, with a few retries on a failed POST. Stop it
// with Close.
func WithEventHandler(h EventHandler) Option {
	return func(s *Server) { s.setHandler(h) }
}

// eventSink is the outgoing queue of CRM events.
type eventSink struct {
	h       EventHandler
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []url.Values
	busy    bool
	paused  bool
	closed  bool
	acc     float64
	sent    int
	dropped int
	failed  int
	done    chan struct{}
	client  *http.Client
}

// SetEventHandler starts sending CRM events to h (as WithEventHandler),
// for a handler whose address is known only once the simulator runs.
func (s *Server) SetEventHandler(h EventHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events != nil {
		s.events.mu.Lock()
		s.events.h = h
		s.events.mu.Unlock()
		return
	}
	s.setHandler(h)
}

func (s *Server) setHandler(h EventHandler) {
	if h.Domain == "" {
		h.Domain = "sim.bitrix24.test"
	}
	k := &eventSink{h: h, done: make(chan struct{}), client: &http.Client{Timeout: 10 * time.Second}}
	k.cond = sync.NewCond(&k.mu)
	s.events = k
	go k.run()
}

// SetEventDrop changes the share of events dropped.
func (s *Server) SetEventDrop(share float64) {
	if s.events == nil {
		return
	}
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	s.events.h.Drop = share
}

// PauseEvents holds the events queued from now on until ResumeEvents, as
// a portal whose event queue runs late does.
func (s *Server) PauseEvents() { s.pauseEvents(true) }

// ResumeEvents sends the events held since PauseEvents, in order.
func (s *Server) ResumeEvents() { s.pauseEvents(false) }

func (s *Server) pauseEvents(p bool) {
	s.mu.Lock()
	k := s.events
	s.mu.Unlock()
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.paused = p
	k.cond.Broadcast()
}

// Close stops sending events (those queued are dropped).
func (s *Server) Close() {
	s.mu.Lock()
	k := s.events
	s.mu.Unlock()
	if k == nil {
		return
	}
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	k.cond.Broadcast()
	k.mu.Unlock()
	<-k.done
}

// EventCounts returns the events sent (answered 2xx), dropped on purpose
// and failed (no 2xx after the retries).
func (s *Server) EventCounts() (sent, dropped, failed int) {
	if s.events == nil {
		return 0, 0, 0
	}
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return s.events.sent, s.events.dropped, s.events.failed
}

// WaitEvents waits until every queued event was sent (or ctx ends).
func (s *Server) WaitEvents(ctx context.Context) error {
	if s.events == nil {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.events.mu.Lock()
		idle := len(s.events.queue) == 0 && !s.events.busy
		s.events.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fire queues the event of a write to entity id (under s.mu).
func (s *Server) fire(entity, verb string, id int) {
	k := s.events
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.acc += k.h.Drop
	if k.acc >= 1-1e-9 {
		k.acc--
		k.dropped++
		return
	}
	v := url.Values{}
	v.Set("event", "ONCRM"+strings.ToUpper(entity)+verb)
	v.Set("event_handler_id", "1")
	v.Set("data[FIELDS][ID]", strconv.Itoa(id))
	v.Set("ts", strconv.FormatInt(s.now().Unix(), 10))
	v.Set("auth[domain]", k.h.Domain)
	v.Set("auth[member_id]", "sim0member")
	v.Set("auth[application_token]", k.h.Token)
	k.queue = append(k.queue, v)
	k.cond.Signal()
}

func (k *eventSink) run() {
	defer close(k.done)
	for {
		k.mu.Lock()
		for (len(k.queue) == 0 || k.paused) && !k.closed {
			k.cond.Wait()
		}
		if k.closed {
			k.mu.Unlock()
			return
		}
		v := k.queue[0]
		k.queue = k.queue[1:]
		k.busy = true
		k.mu.Unlock()
		ok := false
		for try := 0; try < 5 && !ok; try++ {
			if try > 0 {
				time.Sleep(time.Duration(try) * 100 * time.Millisecond)
			}
			resp, err := k.client.PostForm(k.h.URL, v)
			if err == nil {
				resp.Body.Close()
				ok = resp.StatusCode/100 == 2
			}
		}
		k.mu.Lock()
		k.busy = false
		if ok {
			k.sent++
		} else {
			k.failed++
		}
		k.mu.Unlock()
	}
}

// write runs crm.<entity>.add/update as user, stamping MODIFY_BY_ID (and
// CREATED_BY_ID on add), and queues its event. ok is false for any other
// method (the caller runs it as usual).
func (s *Server) write(user, method string, params *object) (callResult, bool) {
	parts := strings.Split(method, ".")
	if len(parts) != 3 || parts[0] != "crm" || (parts[2] != "add" && parts[2] != "update") {
		return callResult{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.crm[parts[1]]
	if !ok {
		return callResult{}, false
	}
	now := s.now()
	if parts[2] == "add" {
		r := e.add(params, now)
		if r.err == nil {
			id := r.result.(int)
			e.items[id]["CREATED_BY_ID"] = user
			e.items[id]["MODIFY_BY_ID"] = user
			s.fire(parts[1], "ADD", id)
		}
		return r, true
	}
	r := e.update(params, now)
	if r.err == nil {
		id, _ := readID(params)
		e.items[id]["MODIFY_BY_ID"] = user
		s.fire(parts[1], "UPDATE", id)
	}
	return r, true
}

// Change updates entity id as user (DefaultUserID when ""), as a person
// editing it in the portal would: fields set, DATE_MODIFY and MODIFY_BY_ID
// stamped, the update event sent. It returns false for an unknown item.
func (s *Server) Change(entity string, id int, fields map[string]any, user string) bool {
	if user == "" {
		user = DefaultUserID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.crm[entity]
	if !ok {
		return false
	}
	item, ok := e.items[id]
	if !ok {
		return false
	}
	for k, v := range fields {
		if !strings.EqualFold(k, "ID") {
			item[strings.ToUpper(k)] = v
		}
	}
	item["DATE_MODIFY"] = s.now().Format(time.RFC3339)
	item["MODIFY_BY_ID"] = user
	s.fire(entity, "UPDATE", id)
	return true
}

// compareDates orders two ISO 8601 date-times (as DATE_MODIFY holds them
// and filters pass them) by time; ok is false unless both are one.
func compareDates(a, b string) (int, bool) {
	if len(a) < 19 || len(b) < 19 || a[4] != '-' || b[4] != '-' {
		return 0, false
	}
	ta, err := time.Parse(time.RFC3339, a)
	if err != nil {
		return 0, false
	}
	tb, err := time.Parse(time.RFC3339, b)
	if err != nil {
		return 0, false
	}
	return ta.Compare(tb), true
}

// hangAfterCommit waits, after a write ran, until the client gives up
// (its request context ends) or d passes, and then drops the connection
// without an answer: Bitrix24 committed, the caller never learns it.
func hangAfterCommit(ctx context.Context, d time.Duration) {
	if d <= 0 {
		d = time.Minute
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	panic(http.ErrAbortHandler)
}
