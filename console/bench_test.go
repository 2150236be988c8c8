package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/history"
	"github.com/hookgate/hookgate/internal/testenv"
)

// benchRows is the history the page benchmark reads.
const benchRows = 100000

// BenchmarkPages times every history-backed console page on 100 000 rows
// of ClickHouse history spread over the last hour (issue 19: every page
// under 300 ms). Run it under the README's test command:
//
//	scripts/test.sh -run '^$' -bench BenchmarkPages -benchtime 20x ./console/
//
// Each sub-benchmark reports ms/page besides ns/op.
func BenchmarkPages(b *testing.B) {
	addr := testenv.ClickHouse(b)
	db := testenv.ClickHouseDatabase(b, addr)
	conn := testenv.ClickHouseConn(b, addr)
	ctx := context.Background()
	if err := history.Migrate(ctx, conn, db, 0); err != nil {
		b.Fatal(err)
	}
	// three rows an event (inbound, crm.deal.get, deliver), 20 sources,
	// every outcome, ts spread over the last hour
	now := time.Now().Unix()
	q := fmt.Sprintf(`INSERT INTO %s.exchanges (ts, exchange_id, event_id, direction, source, provider, event, operation,
		http_method, url, status, outcome, error, attempt, duration_ms, request_headers, request_body, response_body, remote_addr)
	SELECT toDateTime(%d - intDiv(number * 3600, %d)), generateUUIDv4(), concat('ev-', toString(intDiv(number, 3))),
		if(number %% 3 = 0, 'inbound', 'outbound'),
		multiIf(number %% 3 = 0, concat('src-', toString(intDiv(number, 3) %% 20)), number %% 3 = 1, 'main', 'deal-sync'),
		multiIf(number %% 3 = 0, 'bitrix24', number %% 3 = 1, 'bitrix24', 'http'),
		if(number %% 3 = 0, 'ONCRMDEALUPDATE', ''), multiIf(number %% 3 = 0, '', number %% 3 = 1, 'crm.deal.get', 'deliver'),
		'POST', 'https://example.bitrix24.com/rest/1/[redacted]/crm.deal.get.json',
		if(number %% 50 = 0, 401, 200),
		multiIf(number %% 3 = 0 AND number %% 50 = 0, 'rejected', number %% 3 = 0, 'accepted', number %% 7 = 0, 'retry', 'ok'),
		if(number %% 50 = 0, 'invalid_token', ''), 1, toFloat32(number %% 300),
		'{"Content-Type":"application/x-www-form-urlencoded"}', '%s', '{"result":{}}', '127.0.0.1'
	FROM numbers(%d)`, "`"+db+"`", now, benchRows, strings.Repeat("x", 600), benchRows)
	if err := conn.Exec(ctx, q); err != nil {
		b.Fatalf("insert %d rows: %v", benchRows, err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM `"+db+"`.exchanges").Scan(&n); err != nil || n != benchRows {
		b.Fatalf("rows = %d, %v; want %d", n, err, benchRows)
	}
	var exchangeID string
	if err := conn.QueryRow(ctx, "SELECT toString(exchange_id) FROM `"+db+"`.exchanges WHERE event_id = 'ev-16000' AND direction = 'inbound'").Scan(&exchangeID); err != nil {
		b.Fatal(err)
	}

	h := newHarness(b)
	hist := analytics.NewClickHouse(conn, db)
	con, err := New(Config{Token: "admin/token", Secrets: h.secrets, Sources: h.sources, History: hist,
		Dead: h.dead, Routes: h.routes, Logger: h.con.log})
	if err != nil {
		b.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	con.Mount(app)
	h.app = app
	cookie, _ := h.login(b)

	for _, p := range []struct{ name, path string }{
		{"overview", "/console/"},
		{"history", "/console/history"},
		{"history-source", "/console/history?source=src-7&outcome=accepted"},
		{"history-page-100", "/console/history?page=100"},
		{"history-hour", "/console/history?from=" + url.QueryEscape(time.Unix(now-1800, 0).UTC().Format(timeForm)) + "&to=" + url.QueryEscape(time.Unix(now-1200, 0).UTC().Format(timeForm))},
		{"history-event", "/console/history?event_id=ev-16000"},
		{"exchange", "/console/history/exchange/" + exchangeID},
		{"trace", "/console/history/trace/ev-16000"},
		{"sources", "/console/sources"},
		{"dead", "/console/dead"},
		{"routes", "/console/routes"},
	} {
		b.Run(p.name, func(b *testing.B) {
			// one check that the page shows what it should
			resp, body := h.do(b, "GET", p.path, nil, map[string]string{"Cookie": cookie})
			if resp.StatusCode != http.StatusOK || strings.Contains(body, `class="error"`) {
				b.Fatalf("GET %s = %d:\n%s", p.path, resp.StatusCode, body)
			}
			if strings.HasPrefix(p.name, "history") && !regexp.MustCompile(`<tbody>\s*<tr>`).MatchString(body) {
				b.Fatalf("GET %s shows no rows", p.path)
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("GET", "http://console.test"+p.path, nil)
				req.Header.Set("Cookie", cookie)
				resp, err := app.Test(req, -1)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %v %v", p.path, err, resp)
				}
				resp.Body.Close()
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/page")
		})
	}
}
