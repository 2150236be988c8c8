package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/providers"
	"github.com/hookgate/hookgate/telemetry"
)

// The envelope and the answers are written by hand for speed; these tests
// hold them to what encoding/json writes of the same values.

var jsonStrings = []string{
	"", "plain", `quote " and backslash \`, "control \x00\x01\x1f\b\f\n\r\t",
	"<script>&amp;</script>", "caf\u00e9 \u65e5\u672c", "line\u2028para\u2029", "bad utf8 \xff\xfe end",
	"truncated \xe2\x80", "emoji \U0001F600", "\x7f del", strings.Repeat("a<b>", 100),
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonStrings {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s; want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s; want %s", s, got, want)
		}
	})
}

var rawJSONs = []string{
	`{"a":1}`, `{ "a" : [1, 2, {"b":"c d"}] }`, "{\n\t\"x\": \"<&>\"\n}", `{"s":"a\"b\\"}`,
	`"str"`, `[1,2,3]`, `{"u":"\u2028 ` + "\u2028" + `"}`, `{"a":}`, `{"a":1`, `nul`, `{"a":1} x`,
	`{"k":"v"}   `, `  {"k":"v"}`,
}

func TestAppendRawJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range rawJSONs {
		checkRawJSON(t, s)
	}
}

func FuzzAppendRawJSON(f *testing.F) {
	for _, s := range rawJSONs {
		f.Add(s)
	}
	f.Fuzz(checkRawJSON)
}

func checkRawJSON(t *testing.T, s string) {
	if s == "" {
		return // never written: an empty json field is omitted
	}
	want, werr := json.Marshal(json.RawMessage(s))
	got, gerr := appendRawJSON(nil, []byte(s))
	if (werr != nil) != (gerr != nil) || werr == nil && !bytes.Equal(got, want) {
		t.Errorf("appendRawJSON(%q) = %s, %v; encoding/json: %s, %v", s, got, gerr, want, werr)
	}
}

// replaceSecrets redacts fixed values, like the store's Redact.
type replaceSecrets struct{ vals []string }

func (replaceSecrets) Secrets(ctx context.Context, ref string) ([]hookgate.Secret, error) {
	return nil, nil
}

func (r replaceSecrets) Redact(s string) string {
	for _, v := range r.vals {
		s = strings.ReplaceAll(s, v, hookgate.Redacted)
	}
	return s
}

func TestEncodeEventMatchesEncodingJSON(t *testing.T) {
	secret := "s3cr3t-value"
	g := &Gateway{deps: Deps{Secrets: replaceSecrets{[]string{secret}}}}
	src := &source{cfg: config.Source{ID: "b24", Provider: "bitrix24", AuthParameter: "key"}}
	now := time.Date(2026, 11, 22, 23, 1, 2, 345678900, time.FixedZone("X", 3600))
	tests := []struct {
		name    string
		body    string
		ctype   string
		headers map[string]string
		msg     providers.Message
	}{
		{"bitrix24 form", "event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=9&auth%5Bapplication_token%5D=" + secret,
			"application/x-www-form-urlencoded", map[string]string{"User-Agent": "Bitrix24 <Webhook>", "X-Api-Token": "tok"},
			providers.Message{Event: "ONCRMDEALADD", Params: map[string]string{"event": "ONCRMDEALADD", "data[FIELDS][ID]": "9", "auth[application_token]": secret, "refresh_token": "rt-1", "key": "k&v", "note": "has " + secret + " inside"}}},
		{"json", `{ "type": "invoice.paid", "secret": "` + secret + `", "html": "<b>&</b>" }`, "application/json",
			map[string]string{"Webhook-Signature": "v1,abc", "X-Dup": "1"},
			providers.Message{Event: "invoice.paid", Params: map[string]string{}, JSON: json.RawMessage(`{ "type": "invoice.paid", "secret": "` + secret + `", "html": "<b>&</b>" }`)}},
		{"no params, odd bytes", "\xff\x00 body \u2028", "text/plain", nil,
			providers.Message{Event: "in-webhook-request", Redact: []string{"x"}}},
	}
	// no trace (tracing off), a traceparent, a traceparent with a tracestate
	traces := []telemetry.Carrier{{}, {TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", TraceState: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}}
	for i, tc := range tests {
		app := fiber.New()
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("POST")
		rc.Request.SetRequestURI("/webhook/b24?refresh_token=rt-1")
		rc.Request.Header.SetContentType(tc.ctype)
		for k, v := range tc.headers {
			rc.Request.Header.Set(k, v)
		}
		rc.Request.SetBodyString(tc.body)
		c := app.AcquireCtx(&rc)
		in := &inbound{src: src, eventID: "5f0e7d4c-0000-5000-8000-000000000001", msg: &tc.msg,
			table: &sourceTable{authParams: map[string]bool{"key": true}}}
		// tracing on: the CloudEvents distributed-tracing extension
		in.trace = traces[i%len(traces)]
		req := &providers.Request{ContentType: tc.ctype, Header: fastHeader{&rc.Request.Header}, Body: rc.Request.Body(), Now: now}
		got, err := g.encodeEvent(c, req, &tc.msg, in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want, err := json.Marshal(oldEnvelope(g, c, req, &tc.msg, in))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encodeEvent =\n%s\nencoding/json of the envelope =\n%s", tc.name, got, want)
		}
		if bytes.Contains(got, []byte(secret)) || bytes.Contains(got, []byte("rt-1")) {
			t.Errorf("%s: event holds a secret: %s", tc.name, got)
		}
		app.ReleaseCtx(c)
	}
}

// oldEnvelope is the envelope as encoding/json builds it, with the same
// redacted view of the request: the test compares the encoders.
func oldEnvelope(g *Gateway, c *fiber.Ctx, req *providers.Request, msg *providers.Message, in *inbound) *hookgate.Event {
	red := in.redaction(g)
	params := make(map[string]string, len(msg.Params))
	for k, v := range msg.Params {
		params[k] = red.field(k, v)
	}
	body := in.redactedBody(g, c)
	headers := map[string]string{}
	for _, f := range in.headers(g, c) {
		headers[f.name] = f.value
	}
	ev := &hookgate.Event{
		SpecVersion: "1.0", ID: in.eventID, Source: "hookgate/" + in.src.cfg.ID, Type: msg.Event,
		Time: req.Now.UTC(), DataContentType: "application/json",
		TraceParent: in.trace.TraceParent, TraceState: in.trace.TraceState,
		Data: hookgate.EventData{
			WebhookID: in.src.cfg.ID, Provider: in.src.cfg.Provider, Event: msg.Event, Params: params,
			Body: body, ContentType: req.ContentType, Headers: headers,
		},
	}
	if len(msg.JSON) > 0 {
		if bytes.Equal(msg.JSON, req.Body) {
			ev.Data.JSON = json.RawMessage(body)
		} else {
			ev.Data.JSON = json.RawMessage(red.value(red.json(string(msg.JSON))))
		}
	}
	return ev
}
