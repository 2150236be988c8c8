package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/events"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers/github"
	"github.com/hookgate/hookgate/providers/standard"
	"github.com/hookgate/hookgate/providers/stripe"
	"github.com/hookgate/hookgate/vault"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// specEventFields are the CloudEvent's field names as SPEC.md fixes them
// (section "Events", the JSON example): the envelope's, then those of
// "data". The wire format is the contract with every consumer of the bus;
// a field renamed here breaks them all.
var specEventFields = struct{ envelope, data []string }{
	envelope: []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"},
	data:     []string{"webhookId", "provider", "event", "params", "body", "contentType", "headers"},
}

// goldenNow is the gateway's fixed clock in TestEventGolden: the event's
// "time", and the time signatures are checked against.
var goldenNow = time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// goldenSecrets are the secrets of the golden sources; none may appear in
// an event.
var goldenSecrets = map[string]string{
	"bitrix24/deals":  "b24-app-token-golden-0001",
	"landing/api-key": "golden-api-key-0123456789",
	"ci/token":        "ci-token-golden-0123456789",
	"std/signing":     "whsec_" + base64.StdEncoding.EncodeToString([]byte("standard golden key 0123456789ab")),
	"gh/hook":         "github-golden-secret-0123",
	"pay/signing":     "whsec_stripegolden0123456789",
}

// TestEventGolden posts one fixed request per provider through the real
// gateway (the providers of registry(), the file secret store, an
// embedded bus) with a fixed clock, and compares the stored CloudEvent
// byte for byte with testdata/<provider>.golden.json. Every request
// carries its provider's delivery id, so the event id is fixed too.
// go test -run TestEventGolden -update ./cmd/hookgate/ rewrites them.
func TestEventGolden(t *testing.T) {
	dir := t.TempDir()
	var sf strings.Builder
	for _, ref := range slices.Sorted(func(yield func(string) bool) {
		for k := range goldenSecrets {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&sf, "%q: {token: %q}\n", ref, goldenSecrets[ref])
	}
	secretsFile := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(secretsFile, []byte(sf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := vault.New(ctx, config.Secrets{Backend: "file", File: secretsFile})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close secrets: %v", err)
		}
	})
	bcfg := config.Default().Bus
	bcfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bus, err := events.Open(ctx, bcfg, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatalf("events.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := bus.Close(); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})

	sources := []config.Source{
		{ID: "bitrix24-deals", Provider: "bitrix24", Secret: "bitrix24/deals"},
		{ID: "landing", Provider: "apikey", Secret: "landing/api-key"},
		{ID: "ci", Provider: "token", Secret: "ci/token", Event: "ci.build.finished"},
		{ID: "std", Provider: "standard", Secret: "std/signing"},
		{ID: "gh", Provider: "github", Secret: "gh/hook"},
		{ID: "pay", Provider: "stripe", Secret: "pay/signing"},
	}
	gw, err := gateway.New(config.Default().Server, sources, gateway.Deps{
		Registry: registry(), Secrets: store, Bus: bus,
		Now: func() time.Time { return goldenNow },
	})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	stdBody := `{"type":"invoice.paid","data":{"id":"in_1","amount":4200}}`
	stdSig, err := standard.Sign(hookgate.Secret(goldenSecrets["std/signing"]), "msg_golden_1", goldenNow, []byte(stdBody))
	if err != nil {
		t.Fatal(err)
	}
	ghBody := `{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","repository":{"full_name":"acme/shop"}}`
	payBody := `{"id":"evt_golden_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","amount_paid":4200}}}`

	tests := []struct {
		provider, source, event string
		path, ctype, body       string
		header                  map[string]string
		json                    bool // a JSON body: data.json is present
	}{{
		provider: "bitrix24", source: "bitrix24-deals", event: "ONCRMDEALADD",
		path: "/webhook/bitrix24-deals", ctype: "application/x-www-form-urlencoded",
		body: "event=ONCRMDEALADD&event_handler_id=7&data%5BFIELDS%5D%5BID%5D=9&ts=1773480413" +
			"&auth%5Bdomain%5D=portal.example&auth%5Bmember_id%5D=a1b2c3&auth%5Bapplication_token%5D=" + goldenSecrets["bitrix24/deals"],
	}, {
		provider: "apikey", source: "landing", event: "Contact",
		path: "/webhooks/" + goldenSecrets["landing/api-key"], ctype: "application/json",
		body:   `{"EntityName":"Contact","Id":"42","Name":"Ann <a&b>"}`,
		header: map[string]string{"Idempotency-Key": "landing-42"},
		json:   true,
	}, {
		provider: "token", source: "ci", event: "ci.build.finished",
		path: "/webhook/ci?token=" + goldenSecrets["ci/token"] + "&build=17", ctype: "application/x-www-form-urlencoded",
		body:   "status=passed&branch=main",
		header: map[string]string{"Idempotency-Key": "ci-17"},
	}, {
		provider: "standard", source: "std", event: "invoice.paid",
		path: "/webhook/std", ctype: "application/json", body: stdBody,
		header: map[string]string{
			standard.HeaderID: "msg_golden_1", standard.HeaderTimestamp: standard.Timestamp(goldenNow),
			standard.HeaderSignature: stdSig,
		},
		json: true,
	}, {
		provider: "github", source: "gh", event: "push",
		path: "/webhook/gh", ctype: "application/json", body: ghBody,
		header: map[string]string{
			github.HeaderEvent: "push", github.HeaderDelivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			github.HeaderSignature: github.Sign(goldenSecrets["gh/hook"], []byte(ghBody)),
		},
		json: true,
	}, {
		provider: "stripe", source: "pay", event: "invoice.paid",
		path: "/webhook/pay", ctype: "application/json", body: payBody,
		header: map[string]string{stripe.HeaderSignature: stripe.Sign(goldenSecrets["pay/signing"], goldenNow, []byte(payBody))},
		json:   true,
	}}
	if got := len(tests); got != len(registry().Names()) {
		t.Errorf("golden requests for %d providers; the registry has %d: %v", got, len(registry().Names()), registry().Names())
	}
	stream, err := bus.JetStream().Stream(ctx, config.Default().Bus.Stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "hookgate.example" // not the test's random port
			req.Header.Set("User-Agent", "hookgate-golden/1")
			req.Header.Set("Content-Type", tc.ctype)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var answer struct{ Status, ID string }
			if err := json.Unmarshal(ans, &answer); err != nil || resp.StatusCode != 200 || answer.Status != "accepted" {
				t.Fatalf("POST %s = %d %s; want 200 accepted", tc.path, resp.StatusCode, ans)
			}
			msg, err := stream.GetLastMsgForSubject(ctx, hookgate.InboundSubject(tc.source, tc.event))
			if err != nil {
				t.Fatalf("stored event on %s: %v", hookgate.InboundSubject(tc.source, tc.event), err)
			}
			checkSpecFields(t, msg.Data, tc.json)
			var ev hookgate.Event
			if err := json.Unmarshal(msg.Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.ID != answer.ID || ev.Source != "hookgate/"+tc.source || ev.Type != tc.event ||
				ev.Data.WebhookID != tc.source || ev.Data.Provider != tc.provider || !ev.Time.Equal(goldenNow) {
				t.Errorf("event id %s, source %s, type %s, webhookId %s, provider %s, time %v; want %s, hookgate/%s, %s, %s, %s, %v",
					ev.ID, ev.Source, ev.Type, ev.Data.WebhookID, ev.Data.Provider, ev.Time,
					answer.ID, tc.source, tc.event, tc.source, tc.provider, goldenNow)
			}
			for ref, s := range goldenSecrets {
				if bytes.Contains(msg.Data, []byte(s)) {
					t.Errorf("the event holds the secret of %s: %s", ref, msg.Data)
				}
			}
			golden(t, filepath.Join("testdata", tc.provider+".golden.json"), append(msg.Data, '\n'))
		})
	}
}

// checkSpecFields fails when the event lacks a field SPEC.md names, or
// has one it does not name (json only for JSON bodies, traceparent and
// tracestate only with tracing on, which these tests leave off).
func checkSpecFields(t *testing.T, data []byte, jsonBody bool) {
	t.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("event is not a JSON object: %v\n%s", err, data)
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(env["data"], &d); err != nil {
		t.Fatalf("event data is not a JSON object: %v\n%s", err, data)
	}
	wantData := slices.Clone(specEventFields.data)
	if jsonBody {
		wantData = append(wantData, "json") // SPEC.md: "JSON bodies are also exposed as parsed json"
	}
	keys := func(m map[string]json.RawMessage) []string {
		return slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		})
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(specEventFields.envelope)), keys(env)); diff != "" {
		t.Errorf("CloudEvent fields differ from SPEC.md (-spec +event):\n%s", diff)
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(wantData)), keys(d)); diff != "" {
		t.Errorf("CloudEvent data fields differ from SPEC.md (-spec +event):\n%s", diff)
	}
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
