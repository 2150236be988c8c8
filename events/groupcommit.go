package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit (bus.sync: batch). With the embedded server's SyncAlways,
// JetStream fsyncs each message it stores on its own, so every accepted
// webhook pays one fsync. An atomic batch (Nats-Batch-Id) committed to an R1
// file stream under SyncAlways is stored with one fsync for the whole batch
// and acknowledged after it (nats-server v2.15.2 stream.go, the
// coalesceSync branch of processJetStreamBatchMsg; docs/reliability.md).
// So Publish hands its message to a committer, which takes every message
// that arrived while the previous batch was being committed and commits
// them as one atomic batch: each caller returns when the PubAck of its
// batch, sent after the fsync that covers its message, has arrived.
const (
	// Atomic batch headers of JetStream (nats-server 2.12 and later).
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"

	// maxBatchMsgs bounds a batch (the server refuses more than 1000).
	maxBatchMsgs = 256
	// maxBatchBytes bounds a batch's payload: the server stages a batch
	// before it commits it, and one large body need not wait for many.
	maxBatchBytes = 4 << 20
	// commitsInFlight is how many batches may be committing at once: the
	// next one is sent while the server stores the previous one (the
	// stream commits them one after the other).
	commitsInFlight = 2
	// commitTimeout bounds the wait for a batch's PubAck.
	commitTimeout = 30 * time.Second
	// errAtomicDuplicate is JetStream's error code for a batch that holds
	// a message id already stored (or twice): the batch is refused whole.
	errAtomicDuplicate = 10201
)

// pubReq is one Publish waiting for its batch.
type pubReq struct {
	msg  *nats.Msg
	done chan pubResult // buffered: the committer never blocks on it
}

type pubResult struct {
	duplicate bool
	err       error
}

// committer groups concurrent publishes into atomic batches.
type committer struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	reqs   chan *pubReq
	slots  chan struct{}
	prefix string
	seq    atomic.Uint64
	quit   chan struct{}
	wg     sync.WaitGroup

	// counters, for tests and the bench note
	batches atomic.Uint64
	msgs    atomic.Uint64
	singles atomic.Uint64
}

func newCommitter(nc *nats.Conn, js jetstream.JetStream) *committer {
	var p [6]byte
	_, _ = rand.Read(p[:])
	c := &committer{
		nc:     nc,
		js:     js,
		reqs:   make(chan *pubReq, maxPendingAcks),
		slots:  make(chan struct{}, commitsInFlight),
		prefix: hex.EncodeToString(p[:]),
		quit:   make(chan struct{}),
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// stop ends the collecting goroutine and waits for the batches in flight.
func (c *committer) stop() {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	c.wg.Wait()
}

// publish queues msg for the next batch and waits for its result.
func (c *committer) publish(ctx context.Context, msg *nats.Msg, stall time.Duration) (bool, error) {
	r := &pubReq{msg: msg, done: make(chan pubResult, 1)}
	t := time.NewTimer(stall)
	defer t.Stop()
	select {
	case c.reqs <- r:
	case <-t.C:
		return false, errors.New("stalled: too many publishes pending")
	case <-ctx.Done():
		return false, ctx.Err()
	case <-c.quit:
		return false, errors.New("bus closed")
	}
	select {
	case res := <-r.done:
		return res.duplicate, res.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// run collects: it waits for a commit slot, then for a first message, then
// takes whatever else is queued (what arrived while the previous batch
// committed), and commits that batch in its own goroutine.
func (c *committer) run() {
	defer c.wg.Done()
	var carry *pubReq
	for {
		select {
		case c.slots <- struct{}{}:
		case <-c.quit:
			c.refuseQueued()
			return
		}
		batch := make([]*pubReq, 0, 64)
		size := 0
		if carry != nil {
			batch, size, carry = append(batch, carry), len(carry.msg.Data), nil
		} else {
			select {
			case r := <-c.reqs:
				batch, size = append(batch, r), len(r.msg.Data)
			case <-c.quit:
				<-c.slots
				c.refuseQueued()
				return
			}
		}
	collect:
		for len(batch) < maxBatchMsgs {
			select {
			case r := <-c.reqs:
				if size+len(r.msg.Data) > maxBatchBytes {
					carry = r
					break collect
				}
				batch, size = append(batch, r), size+len(r.msg.Data)
			default:
				break collect
			}
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() { <-c.slots }()
			c.commit(batch)
		}()
	}
}

// refuseQueued answers the requests still queued when the bus closes.
func (c *committer) refuseQueued() {
	for {
		select {
		case r := <-c.reqs:
			r.done <- pubResult{err: errors.New("bus closed")}
		default:
			return
		}
	}
}

// commit stores batch and answers every request in it.
func (c *committer) commit(batch []*pubReq) {
	if len(batch) == 1 {
		c.single(batch)
		return
	}
	c.batches.Add(1)
	c.msgs.Add(uint64(len(batch)))
	id := c.prefix + "-" + strconv.FormatUint(c.seq.Add(1), 36)
	var err error
	for i, r := range batch {
		m := &nats.Msg{Subject: r.msg.Subject, Data: r.msg.Data, Header: nats.Header{}}
		for k, v := range r.msg.Header {
			m.Header[k] = v
		}
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
		if i < len(batch)-1 {
			// No reply: the server acknowledges the batch once, on commit.
			if err = c.nc.PublishMsg(m); err != nil {
				break
			}
			continue
		}
		m.Header.Set(batchCommitHeader, "1")
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		var resp *nats.Msg
		resp, err = c.nc.RequestMsgWithContext(ctx, m)
		cancel()
		if err == nil {
			err = batchAckError(resp.Data, len(batch))
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errAtomicDuplicate {
		// Refused whole, nothing stored: at least one id is a duplicate.
		// Publish one by one, so each learns whether it is one.
		c.single(batch)
		return
	}
	for _, r := range batch {
		r.done <- pubResult{err: err}
	}
}

// single publishes each request on its own (asynchronously, acknowledged
// one by one) and answers each.
func (c *committer) single(batch []*pubReq) {
	c.singles.Add(uint64(len(batch)))
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, r := range batch {
		f, err := c.js.PublishMsgAsync(r.msg, jetstream.WithStallWait(maxStallWait))
		if err != nil {
			r.done <- pubResult{err: err}
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			batch[i].done <- pubResult{duplicate: ack.Duplicate}
		case err := <-f.Err():
			batch[i].done <- pubResult{err: err}
		}
	}
}

// batchAckError reads a batch's PubAck: nil when it was stored.
func batchAckError(data []byte, n int) error {
	var resp struct {
		Error *jetstream.APIError `json:"error"`
		Count int                 `json:"count"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("batch ack: %w", err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.Count != n {
		return fmt.Errorf("batch ack: %d messages stored, %d sent", resp.Count, n)
	}
	return nil
}
