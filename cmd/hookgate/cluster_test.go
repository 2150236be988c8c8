package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/internal/testenv"
)

// TestReplicatedBus runs the gateway on a three-node NATS cluster with
// bus.replicas: 3: every stream and bucket it creates (the inbound stream,
// the jobs, the runtime sources, the disabled routes, the job state and
// dead letters) is kept on three servers, one it finds with a single
// replica is raised to three, and with one server killed the gateway
// still stores what it accepts.
func TestReplicatedBus(t *testing.T) {
	bin := testenv.Require(t, testenv.EnvNATSBin, "nats-server")
	const n = 3
	var ports, cports [n]int
	for i := range n {
		ports[i], cports[i] = testenv.FreePort(t), testenv.FreePort(t)
	}
	var routes, urls []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cports[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var nodes [n]*testenv.Process
	for i := range n {
		nodes[i] = testenv.StartProcess(t, bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]),
			"-n", "hg-"+strconv.Itoa(i), "--cluster_name", "hg", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
	}
	for i := range n {
		if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", ports[i]), 10*time.Second); err != nil {
			t.Fatalf("nats-server %d: %v\n%s", i, err, nodes[i].Log())
		}
	}
	busURL := strings.Join(urls, ",")
	nc, err := nats.Connect(busURL, nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// the cluster needs a meta leader before it creates streams
	waitFor(t, "a JetStream meta leader", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})

	// and all three peers online before it places a three-replica stream
	// (a node still joining answers "no suitable peers for placement")
	waitFor(t, "three JetStream peers", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe.>"}, Replicas: 3}); err != nil {
			return false
		}
		return js.DeleteStream(ctx, "PROBE") == nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// a bucket left by an older hookgate with one replica is raised to three
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "hookgate_sources", History: 5, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}

	cfg := fileConfig(t, "bus: {url: \""+busURL+"\", replicas: 3}\n")
	g := startGateway(t, cfg)

	replicas := map[string]int{}
	for name := range js.StreamNames(ctx).Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		replicas[name] = s.CachedInfo().Config.Replicas
	}
	for _, name := range []string{"HOOKGATE", "HOOKGATE_JOBS", "KV_hookgate_sources", "KV_hookgate_routes_disabled"} {
		if _, ok := replicas[name]; !ok {
			t.Errorf("stream %s missing; streams: %v", name, replicas)
		}
	}
	for name, r := range replicas {
		if r != n {
			t.Errorf("stream %s has %d replicas; want %d (bus.replicas)", name, r, n)
		}
	}

	// one server down: a quorum of two still stores events
	nodes[n-1].Kill()
	var id string
	waitFor(t, "a 200 with one of three servers down", 30*time.Second, func() bool {
		status, ans := post(t, g.URL+"/webhook/b24", "application/x-www-form-urlencoded",
			bitrixForm("fault-token-4j8k2m", "7", "cluster-1"), nil)
		id = ans["id"]
		return status == 200
	})
	s, err := js.Stream(ctx, "HOOKGATE")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "hookgate.in.b24.>")
	if err != nil {
		t.Fatalf("the accepted event is not in the stream: %v", err)
	}
	if id == "" || !strings.Contains(string(msg.Data), id) {
		t.Errorf("last stored event is not %s: %.200s", id, msg.Data)
	}
}
