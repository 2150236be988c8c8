package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/internal/testenv"
	"github.com/hookgate/hookgate/providers/standard"
)

// leakSecrets are the secret values of the leak test's config.
var leakSecrets = map[string]string{
	"b24/token":     "leakb24tokenqz81mx0c",
	"landing/key":   "leaklandingkey-4nq7wz",
	"ci/token":      "leakcitoken-p3v8rt2s",
	"billing/sign":  "whsec_" + base64.StdEncoding.EncodeToString([]byte("leak-billing-key-32-bytes-long!!")),
	"gh/secret":     "leakghsecret-k5d2fj9w",
	"admin/token":   "leakadmintoken-x7c4vb",
	"ci-rt/token":   "leakruntimetoken-8h3j",
	"notastore/val": "leak-not-in-store-6g5",
}

// encodingsOf lists every form of s the test looks for: raw, URL-, path-
// and JSON-escaped as the redactor knows them, and the unusual ones a
// sender may use: lower- and upper-case percent-hex of every byte,
// \u00XX escapes, quoted-printable and base64.
func encodingsOf(s string) map[string]string {
	var lower, upper, uni, qp strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&lower, "%%%02x", s[i])
		fmt.Fprintf(&upper, "%%%02X", s[i])
		fmt.Fprintf(&uni, `\u%04x`, s[i])
		fmt.Fprintf(&qp, "=%02X", s[i])
	}
	return map[string]string{
		"raw": s, "query": url.QueryEscape(s), "path": url.PathEscape(s),
		"lower-hex": lower.String(), "upper-hex": upper.String(), "json-unicode": uni.String(),
		"quoted-printable": qp.String(), "base64": base64.StdEncoding.EncodeToString([]byte(s)),
	}
}

func leakConfig(t *testing.T, history string) (path, dir string) {
	path, dir = writeConfig(t, `
data_dir: {{data}}
log: {level: debug}
secrets: {backend: file, file: {{dir}}/secrets.yaml}
admin: {token: admin/token}
sources:
  - {id: b24, provider: bitrix24, secret: b24/token}
  - {id: landing, provider: apikey, secret: landing/key}
  - {id: ci, provider: token, secret: ci/token, auth_parameter: key}
  - {id: billing, provider: standard, secret: billing/sign}
  - {id: repo, provider: github, secret: gh/secret}
`+history)
	var y strings.Builder
	for ref, v := range leakSecrets {
		fmt.Fprintf(&y, "%s: {token: %q}\n", ref, v)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// carrier is a note holding every secret in one encoding.
func carrier(enc string) string {
	var parts []string
	for ref, v := range leakSecrets {
		if ref != "notastore/val" { // sent only as a (wrong) credential
			parts = append(parts, encodingsOf(v)[enc])
		}
	}
	return strings.Join(parts, " ")
}

// multipartBody makes a multipart/form-data body whose parts are sent
// quoted-printable (every byte encoded) or base64.
func multipartBody(t *testing.T, fields [][3]string) (string, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields { // name, content, transfer encoding
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, f[0]))
		content := f[1]
		switch f[2] {
		case "quoted-printable":
			h.Set("Content-Transfer-Encoding", "quoted-printable")
			content = encodingsOf(f[1])["quoted-printable"]
		case "base64":
			h.Set("Content-Transfer-Encoding", "base64")
			content = base64.StdEncoding.EncodeToString([]byte(f[1]))
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pw, content)
	}
	w.Close()
	return buf.String(), w.FormDataContentType()
}

// TestNoSecretInAnyEncoding sends each secret of the config in every
// encoding a sender may use, through every provider, and searches every
// event, history row (NDJSON, then ClickHouse), log line and admin answer
// for each secret, raw and in each encoding: it finds none (issue 14).
func TestNoSecretInAnyEncoding(t *testing.T) {
	t.Run("ndjson", func(t *testing.T) { leakRun(t, "") })
	t.Run("clickhouse", func(t *testing.T) {
		addr := testenv.ClickHouse(t)
		db := testenv.ClickHouseDatabase(t, addr)
		leakRun(t, fmt.Sprintf("history: {clickhouse: {addr: [%q], database: %s}, flush_interval: 200ms}\n", addr, db), db)
	})
}

func leakRun(t *testing.T, history string, chdb ...string) {
	cfg, _ := leakConfig(t, history)
	g := startGateway(t, cfg)
	s := leakSecrets
	type call struct {
		name, path, ctype, body string
		hdr                     map[string]string
		want                    int
	}
	form := "application/x-www-form-urlencoded"
	notes := func(kind string) string { return carrier(kind) }
	var calls []call

	// Bitrix24: the token itself as lower-case percent-hex, the other
	// secrets in another field; then a wrong token (401) likewise.
	for i, enc := range []string{"lower-hex", "upper-hex"} {
		body := "event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=" + fmt.Sprint(i) +
			"&auth%5Bapplication_token%5D=" + encodingsOf(s["b24/token"])[enc] + "&note=" + encodingsOf(carrier("raw"))[enc]
		calls = append(calls, call{"bitrix24 " + enc, "/webhook/b24", form, body, nil, 200})
	}
	calls = append(calls, call{"bitrix24 wrong token", "/webhook/b24", form,
		"event=ONCRMDEALADD&auth%5Bapplication_token%5D=" + encodingsOf(s["notastore/val"])["lower-hex"] + "&note=" + encodingsOf(carrier("raw"))["lower-hex"], nil, 401})

	// Creatio-style API key: the key in the path, secrets JSON-escaped in
	// another field, and in quoted-printable and base64 multipart parts.
	calls = append(calls, call{"apikey json", "/webhooks/" + s["landing/key"], "application/json",
		`{"EntityName":"Lead","note":"` + notes("json-unicode") + `"}`, nil, 200})
	mp, mpType := multipartBody(t, [][3]string{{"EntityName", "Lead", ""}, {"note", carrier("raw"), "quoted-printable"}, {"more", carrier("raw"), "base64"}})
	calls = append(calls, call{"apikey multipart", "/webhooks/" + s["landing/key"], mpType, mp, nil, 200})

	// Citeck-style token with a custom auth_parameter "key": in a
	// quoted-printable part, as lower-case hex in the form and the query.
	mp, mpType = multipartBody(t, [][3]string{{"key", s["ci/token"], "quoted-printable"}, {"note", carrier("raw"), "quoted-printable"}})
	calls = append(calls, call{"token multipart", "/webhook/ci", mpType, mp, nil, 200})
	calls = append(calls, call{"token form", "/webhook/ci", form, "key=" + encodingsOf(s["ci/token"])["lower-hex"] + "&note=" + encodingsOf(carrier("raw"))["lower-hex"], nil, 200})
	calls = append(calls, call{"token query", "/webhook/ci?key=" + encodingsOf(s["ci/token"])["lower-hex"] + "&note=" + encodingsOf(carrier("raw"))["lower-hex"],
		"application/json", `{"note":"` + notes("json-unicode") + `"}`, nil, 200})
	calls = append(calls, call{"token wrong, custom name", "/webhook/ci", form, "key=" + s["notastore/val"] + "&x=1", nil, 401})

	// Standard Webhooks and GitHub: signed JSON with the secrets escaped.
	stdBody := `{"type":"invoice.paid","note":"` + notes("json-unicode") + `"}`
	now := time.Now()
	sig, err := standard.Sign(hookgate.Secret(s["billing/sign"]), "msg_leak_1", now, []byte(stdBody))
	if err != nil {
		t.Fatal(err)
	}
	calls = append(calls, call{"standard", "/webhook/billing", "application/json", stdBody, map[string]string{
		"webhook-id": "msg_leak_1", "webhook-timestamp": fmt.Sprint(now.Unix()), "webhook-signature": sig}, 200})
	ghBody := `{"zen":"` + notes("json-unicode") + `"}`
	m := hmac.New(sha256.New, []byte(s["gh/secret"]))
	m.Write([]byte(ghBody))
	calls = append(calls, call{"github", "/webhook/repo", "application/json", ghBody, map[string]string{
		"X-GitHub-Event": "push", "X-GitHub-Delivery": "leak-1", "X-Hub-Signature-256": "sha256=" + hex.EncodeToString(m.Sum(nil)),
		"X-Note": encodingsOf(carrier("raw"))["lower-hex"]}, 200})

	var answers strings.Builder
	for _, c := range calls {
		req, err := http.NewRequest("POST", g.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", c.ctype)
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		status, body := do(t, req)
		if status != c.want {
			t.Errorf("%s = %d %s; want %d", c.name, status, body, c.want)
		}
		answers.WriteString(body)
	}

	// admin answers: the sources list, a runtime source, a refused one
	admin := func(method, path, body string) {
		req, _ := http.NewRequest(method, g.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s["admin/token"])
		req.Header.Set("Content-Type", "application/json")
		_, b := do(t, req)
		answers.WriteString(b)
	}
	admin("PUT", "/admin/sources/rt", `{"provider":"token","secret":"ci-rt/token","auth_parameter":"key"}`)
	admin("GET", "/admin/sources", "")
	admin("PUT", "/admin/sources/bad", `{"provider":"token","secret":"`+s["ci-rt/token"]+`/","options":{"api_key":"`+s["notastore/val"]+`"}}`)
	admin("PUT", "/admin/sources/bad2", `{"provider":"nope","secret":"`+s["notastore/val"]+`"}`)

	// the events, as stored
	var events strings.Builder
	nc, err := nats.Connect(g.BusURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "HOOKGATE", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for msg := range batch.Messages() {
			events.Write(msg.Data())
			events.WriteByte('\n')
			got++
		}
		n += got
		if got == 0 {
			break
		}
	}
	nc.Close()
	if accepted := 9; n != accepted {
		t.Errorf("the stream holds %d events; want %d", n, accepted)
	}

	// history: stop the gateway so that everything is flushed
	g.Stop()
	var hist strings.Builder
	rows := 0
	if len(chdb) > 0 {
		out := chQuery(t, "SELECT * FROM "+chdb[0]+".exchanges FORMAT JSONEachRow")
		hist.WriteString(out)
		rows = strings.Count(out, "\n") + 1
	} else {
		filepath.WalkDir(filepath.Join(g.DataDir, "history"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				hist.Write(b)
				rows += bytes.Count(b, []byte("\n"))
			}
			return nil
		})
	}
	if rows < len(calls) {
		t.Errorf("history holds %d rows; want at least %d", rows, len(calls))
	}
	logText, err := os.ReadFile(filepath.Join(g.Process.Dir(), "hookgate.log"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for where, text := range map[string]string{"events": events.String(), "history": hist.String(), "log": string(logText), "answers": answers.String()} {
		for ref, v := range s {
			for enc, form := range encodingsOf(v) {
				if strings.Contains(text, form) {
					found++
					i := strings.Index(text, form)
					t.Errorf("%s holds %s (%s): …%s…", where, ref, enc, text[max(0, i-120):min(len(text), i+len(form)+40)])
				}
			}
		}
	}
	t.Logf("%d requests, %d events, %d history rows, %d log bytes searched for %d secrets in 8 encodings: %d found",
		len(calls), n, rows, len(logText), len(s), found)
}
