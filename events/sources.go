package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/config"
)

// SourcesBucket is the JetStream KV bucket holding the sources created at
// runtime through the admin API, one key per source id, the value the
// source entry as JSON (its secret is a reference, never a value).
const SourcesBucket = "hookgate_sources"

// SourceStore persists runtime sources in a JetStream KV bucket shared by
// every instance on the bus.
type SourceStore struct {
	kv jetstream.KeyValue
}

// NewSourceStore opens (creating when needed) the runtime sources bucket,
// kept on replicas servers (bus.replicas).
func NewSourceStore(ctx context.Context, js jetstream.JetStream, replicas int) (*SourceStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SourcesBucket,
		Description: "hookgate runtime sources (admin API)",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("events: bucket %s: %w", SourcesBucket, err)
	}
	return &SourceStore{kv: kv}, nil
}

// Put creates or replaces a source.
func (s *SourceStore) Put(ctx context.Context, src config.Source) error {
	if len(src.ID) > config.MaxIDLength {
		return fmt.Errorf("events: source id of %d bytes (at most %d)", len(src.ID), config.MaxIDLength)
	}
	b, err := json.Marshal(src)
	if err != nil {
		return fmt.Errorf("events: encode source %q: %w", src.ID, err)
	}
	if _, err := s.kv.Put(ctx, src.ID, b); err != nil {
		return fmt.Errorf("events: store source %q: %w", src.ID, err)
	}
	return nil
}

// Delete removes a source; deleting an absent one is not an error.
func (s *SourceStore) Delete(ctx context.Context, id string) error {
	if err := s.kv.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("events: delete source %q: %w", id, err)
	}
	return nil
}

// List returns the stored sources, sorted by id.
func (s *SourceStore) List(ctx context.Context) ([]config.Source, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("events: list sources: %w", err)
	}
	defer w.Stop()
	var out []config.Source
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("events: list sources: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("events: list sources: watcher stopped")
			}
			if e == nil { // end of the initial values
				sortSources(out)
				return out, nil
			}
			if src, ok := decodeSource(e); ok {
				out = append(out, src)
			}
		}
	}
}

// Watch calls fn with the full list of runtime sources (sorted by id) once
// the stored ones are read, then after every change, until ctx ends. It
// returns nil when ctx ends, or an error when the watch cannot start or
// stops. fn runs on Watch's goroutine; a change made on any instance
// reaches every watcher within milliseconds.
func (s *SourceStore) Watch(ctx context.Context, fn func([]config.Source)) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("events: watch sources: %w", err)
	}
	defer w.Stop()
	cur := map[string]config.Source{}
	initial := true
	emit := func() {
		list := make([]config.Source, 0, len(cur))
		for _, src := range cur {
			list = append(list, src)
		}
		sortSources(list)
		fn(list)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("events: watch sources: watcher stopped")
			}
			if e == nil {
				initial = false
				emit()
				continue
			}
			switch e.Operation() {
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				delete(cur, e.Key())
			default:
				if src, ok := decodeSource(e); ok {
					cur[src.ID] = src
				}
			}
			if !initial {
				emit()
			}
		}
	}
}

func decodeSource(e jetstream.KeyValueEntry) (config.Source, bool) {
	var src config.Source
	if err := json.Unmarshal(e.Value(), &src); err != nil || src.ID != e.Key() {
		return config.Source{}, false // not ours: skipped, never fatal
	}
	return src, true
}

func sortSources(list []config.Source) {
	slices.SortFunc(list, func(a, b config.Source) int { return strings.Compare(a.ID, b.ID) })
}
