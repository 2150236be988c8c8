package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/internal/testenv"
)

// twoBuses opens an embedded bus and a second connection to it, as two
// instances sharing one NATS would have.
func twoBuses(t *testing.T) (a, b *events.Bus) {
	t.Helper()
	cfg := config.Default().Bus
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dir := t.TempDir()
	a, err := events.Open(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	tok, err := events.ReadToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err = events.Connect("nats://"+cfg.Listen, events.WithToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

func TestSourceStorePutListDelete(t *testing.T) {
	ctx := context.Background()
	bus, _ := twoBuses(t)
	st, err := events.NewSourceStore(ctx, bus.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("List(empty) = %v, %v; want none", got, err)
	}
	x := config.Source{ID: "x", Provider: "token", Secret: "x/token", AuthParameter: "key", Rate: &config.Rate{PerSecond: 5, Burst: 10}}
	y := config.Source{ID: "y", Provider: "apikey", Secret: "y/key"}
	for _, s := range []config.Source{y, x, x} {
		if err := st.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]config.Source{x, y}, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := st.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "never-there"); err != nil {
		t.Errorf("Delete(absent) = %v; want nil", err)
	}
	got, _ = st.List(ctx)
	if diff := cmp.Diff([]config.Source{y}, got); diff != "" {
		t.Errorf("List after Delete (-want +got):\n%s", diff)
	}
}

// A change made through one connection reaches a watcher on another within
// 1 s, as the full list.
func TestSourceStoreWatchAcrossInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	busA, busB := twoBuses(t)
	stA, err := events.NewSourceStore(ctx, busA.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	stB, err := events.NewSourceStore(ctx, busB.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pre := config.Source{ID: "pre", Provider: "token", Secret: "pre/token"}
	if err := stA.Put(ctx, pre); err != nil {
		t.Fatal(err)
	}
	lists := make(chan []config.Source, 16)
	done := make(chan error, 1)
	go func() { done <- stB.Watch(ctx, func(l []config.Source) { lists <- l }) }()

	next := func(what string) []config.Source {
		t.Helper()
		select {
		case l := <-lists:
			return l
		case <-time.After(time.Second):
			t.Fatalf("%s: no update within 1 s", what)
			return nil
		}
	}
	if diff := cmp.Diff([]config.Source{pre}, next("initial")); diff != "" {
		t.Errorf("initial list (-want +got):\n%s", diff)
	}
	added := config.Source{ID: "added", Provider: "apikey", Secret: "added/key"}
	if err := stA.Put(ctx, added); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]config.Source{added, pre}, next("put")); diff != "" {
		t.Errorf("after put (-want +got):\n%s", diff)
	}
	if err := stA.Delete(ctx, "pre"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]config.Source{added}, next("delete")); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch returned %v after cancel; want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Watch did not return after cancel")
	}
}
