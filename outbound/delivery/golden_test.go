package delivery_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/outbound/delivery"
	"github.com/hookgate/hookgate/providers/standard"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestDeliveryGolden pins the signed request a delivery puts on the wire
// (request line, headers in their order and spelling, body) with a fixed
// clock and webhook-id, against testdata/delivery.golden.http. The
// endpoint is a bare TCP listener that keeps the bytes as they came;
// only the test server's address is replaced by platform.example.
// go test -run TestDeliveryGolden ./outbound/delivery/ -update rewrites it.
func TestDeliveryGolden(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			raw <- nil
			return
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			raw <- nil
			return
		}
		var got bytes.Buffer
		req, err := http.ReadRequest(bufio.NewReader(io.TeeReader(conn, &got)))
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		if err != nil {
			raw <- nil
			return
		}
		raw <- got.Bytes()
		_, _ = io.WriteString(conn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n") // the test checks Deliver's error
	}()

	now := time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	secret := hookgate.Secret("whsec_" + base64.StdEncoding.EncodeToString([]byte("platform golden key 0123456789ab")))
	const id = "2f1c3e0a-6d1b-5c8e-9a47-0c1d2e3f4a5b/deal-sync"
	body := []byte(`{"specversion":"1.0","id":"2f1c3e0a-6d1b-5c8e-9a47-0c1d2e3f4a5b","type":"ONCRMDEALADD","data":{"deal":{"ID":"9","TITLE":"Ann <a&b>"}}}`)
	c := delivery.New(delivery.WithClock(func() time.Time { return now }))
	addr := ln.Addr().String()
	resp, err := c.Deliver(context.Background(), "http://"+addr+"/hooks/deals?tenant=7", secret, id, body)
	if err != nil || resp.Status != http.StatusNoContent {
		t.Fatalf("Deliver = %+v, %v; want 204", resp, err)
	}
	var got []byte
	select {
	case got = <-raw:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint got no request")
	}
	if got == nil {
		t.Fatal("the endpoint could not read the request")
	}
	// The signature is what Standard Webhooks makes of id, timestamp and
	// body, whatever the golden file says.
	wantSig, err := standard.Sign(secret, id, now, body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte("\r\nWebhook-Signature: "+wantSig+"\r\n")) {
		t.Errorf("request lacks webhook-signature %s:\n%s", wantSig, got)
	}
	s := strings.ReplaceAll(string(got), addr, "platform.example")
	s = strings.ReplaceAll(s, "User-Agent: hookgate/"+hookgate.Version+"\r\n", "User-Agent: hookgate/VERSION\r\n")
	golden(t, filepath.Join("testdata", "delivery.golden.http"), []byte(s))
}

// golden compares got with the file at path, or rewrites the file with
// -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got); if the change is meant, rerun with -update:\n%s", path, diff)
	}
}
