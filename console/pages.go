package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/admin"
	"github.com/hookgate/hookgate/analytics"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/routes"
)

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000")
	},
	"ms": func(f float32) string { return strconv.FormatFloat(float64(f), 'f', 1, 64) },
	"bytes": func(n float64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", n/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", n/(1<<10))
		}
		return fmt.Sprintf("%.0f B", n)
	},
	"pathesc": url.PathEscape,
	"dash": func(s string) string {
		if s == "" {
			return "–"
		}
		return s
	},
}

// clean bounds a form or query value: trimmed, at most 256 bytes of valid
// UTF-8, as a string of its own (Fiber's values point into a buffer the
// next request reuses).
func clean(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.ToValidUTF8(strings.Clone(s), "")
}

// ---------------------------------------------------------------- overview

type readiness struct {
	Name    string
	OK      bool
	Message string
}

type inboundRow struct {
	Source                        string
	Accepted, Duplicate, Rejected uint64
	Reasons                       []analytics.Reason
}

type outboundRow struct {
	Source, Operation string
	OK, Retry, Failed uint64
	LastError         string
}

type gauge struct {
	Name  string
	Value string
}

type overviewView struct {
	Ready      []readiness
	Inbound    []inboundRow
	Outbound   []outboundRow
	HistoryErr string
	Breakers   []gauge
	Dead       string
	Pending    string
	Spool      string
	Series     seriesData
	SeriesJSON string // Series for the charts' script (a data- attribute: htmx drops script elements it swaps in)
}

// seriesData is what the overview's uPlot charts draw: per-minute counts
// of the last hour.
type seriesData struct {
	X      []int64             `json:"x"`
	Series map[string][]uint64 `json:"series"`
}

func (c *Console) overview(ctx *fiber.Ctx) error {
	octx, cancel := opCtx(ctx)
	defer cancel()
	v := overviewView{Dead: "–", Pending: "–", Spool: "–"}
	names := make([]string, 0, len(c.cfg.Checks))
	for n := range c.cfg.Checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cctx, cancel := context.WithTimeout(octx, 2*time.Second)
		err := c.cfg.Checks[n](cctx)
		cancel()
		r := readiness{Name: n, OK: err == nil, Message: "ready"}
		if err != nil {
			r.Message = c.cfg.Secrets.Redact(err.Error())
		}
		v.Ready = append(v.Ready, r)
	}
	now := c.cfg.Now()
	since := now.Add(-time.Hour).Truncate(time.Minute)
	if h := c.cfg.History; h == nil {
		v.HistoryErr = "History is not readable from this gateway."
	} else if err := c.summary(octx, h, since, &v); analytics.NotYet(err) {
		v.HistoryErr = "No history yet: rows appear after the history writer's first flush."
	} else if err != nil {
		v.HistoryErr = c.problem(err, "read history")
	}
	c.readMetrics(&v)
	if c.cfg.Dead != nil {
		if d, err := c.cfg.Dead.Dead(octx); err == nil {
			v.Dead = strconv.Itoa(len(d))
		}
	}
	return c.render(ctx, fiber.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Data: v})
}

func (c *Console) summary(ctx context.Context, h analytics.Browser, since time.Time, v *overviewView) error {
	rows, err := analytics.Summary(ctx, h, "", c.cfg.Now().Sub(since))
	if err != nil {
		return err
	}
	in := map[string]*inboundRow{}
	out := map[[2]string]*outboundRow{}
	for _, r := range rows {
		if r.Direction == hookgate.Inbound {
			ir := in[r.Source]
			if ir == nil {
				ir = &inboundRow{Source: r.Source}
				in[r.Source] = ir
			}
			switch r.Outcome {
			case "accepted":
				ir.Accepted += r.Count
			case "duplicate":
				ir.Duplicate += r.Count
			default:
				ir.Rejected += r.Count
			}
			continue
		}
		k := [2]string{r.Source, r.Operation}
		or := out[k]
		if or == nil {
			or = &outboundRow{Source: r.Source, Operation: r.Operation}
			out[k] = or
		}
		switch r.Outcome {
		case "ok", "suppressed": // suppressed: an echo that needed no delivery (docs/sync.md)
			or.OK += r.Count
		case "retry":
			or.Retry += r.Count
		default:
			or.Failed += r.Count
		}
		if r.LastError != "" {
			or.LastError = r.LastError
		}
	}
	reasons, err := h.Reasons(ctx, since)
	if err != nil {
		return err
	}
	for _, r := range reasons {
		ir := in[r.Source]
		if ir == nil {
			ir = &inboundRow{Source: r.Source}
			in[r.Source] = ir
		}
		ir.Reasons = append(ir.Reasons, r)
	}
	for _, r := range in {
		v.Inbound = append(v.Inbound, *r)
	}
	slices.SortFunc(v.Inbound, func(a, b inboundRow) int { return strings.Compare(a.Source, b.Source) })
	for _, r := range out {
		v.Outbound = append(v.Outbound, *r)
	}
	slices.SortFunc(v.Outbound, func(a, b outboundRow) int {
		return strings.Compare(a.Source+"\x00"+a.Operation, b.Source+"\x00"+b.Operation)
	})
	pts, err := h.Series(ctx, since, time.Minute)
	if err != nil {
		return err
	}
	v.Series = series(since, c.cfg.Now(), pts)
	b, err := json.Marshal(v.Series)
	if err != nil {
		return err
	}
	v.SeriesJSON = string(b)
	return nil
}

// series lays points out per minute from since to now, zeros filled, in
// the four lines the charts draw.
func series(since, now time.Time, pts []analytics.Point) seriesData {
	n := int(now.Sub(since)/time.Minute) + 1
	d := seriesData{X: make([]int64, n), Series: map[string][]uint64{}}
	for _, k := range []string{"accepted", "rejected", "delivered", "failed"} {
		d.Series[k] = make([]uint64, n)
	}
	for i := range d.X {
		d.X[i] = since.Add(time.Duration(i) * time.Minute).Unix()
	}
	for _, p := range pts {
		i := int(p.Bucket.Sub(since) / time.Minute)
		if i < 0 || i >= n {
			continue
		}
		var k string
		switch {
		case p.Direction == hookgate.Inbound && (p.Outcome == "accepted" || p.Outcome == "duplicate"):
			k = "accepted"
		case p.Direction == hookgate.Inbound:
			k = "rejected"
		case p.Outcome == "ok":
			k = "delivered"
		default:
			k = "failed"
		}
		d.Series[k][i] += p.Count
	}
	return d
}

// readMetrics fills the breaker states, pending jobs and spool size from
// the gateway's metrics.
func (c *Console) readMetrics(v *overviewView) {
	if c.cfg.Metrics == nil {
		return
	}
	fams, err := c.cfg.Metrics.Gather()
	if err != nil {
		return
	}
	for _, f := range fams {
		switch f.GetName() {
		case "hookgate_breaker_state":
			for _, m := range f.GetMetric() {
				portal := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "portal" {
						portal = l.GetValue()
					}
				}
				state := "closed"
				switch m.GetGauge().GetValue() {
				case 1:
					state = "half-open"
				case 2:
					state = "open"
				}
				v.Breakers = append(v.Breakers, gauge{Name: portal, Value: state})
			}
		case "hookgate_jobs_pending":
			if ms := f.GetMetric(); len(ms) > 0 {
				v.Pending = strconv.FormatFloat(ms[0].GetGauge().GetValue(), 'f', 0, 64)
			}
		case "hookgate_history_spool_bytes":
			if ms := f.GetMetric(); len(ms) > 0 {
				v.Spool = funcs["bytes"].(func(float64) string)(ms[0].GetGauge().GetValue())
			}
		}
	}
	slices.SortFunc(v.Breakers, func(a, b gauge) int { return strings.Compare(a.Name, b.Name) })
}

// ----------------------------------------------------------------- sources

type sourceRow struct {
	gateway.SourceInfo
	URL    string // the exact URL to paste into the sender
	How    string // where the credential goes
	Broken string // why its secret cannot be read; "" = readable
}

type sourcesView struct {
	Sources []sourceRow
}

// sourceURL returns the URL a sender posts to and where its credential
// goes, by provider (docs/providers.md). The credential itself is never
// shown: it is the value stored under the source's secret reference.
func sourceURL(base string, s gateway.SourceInfo) (u, how string) {
	hook := base + "/webhook/" + url.PathEscape(s.ID)
	param := s.AuthParameter
	switch s.Provider {
	case "bitrix24":
		if param == "" {
			param = "auth[application_token]"
		}
		return hook, "Bitrix24 outbound webhook: handler URL above; Bitrix24 sends the application token in the form field " + param + " (the value stored at the secret reference)."
	case "apikey":
		return base + "/webhooks/{API key}", "Creatio-style API key: the key is the last path segment, the value stored at the secret reference."
	case "token":
		if param == "" {
			param = "token"
		}
		return hook + "?" + param + "={token}", "Citeck/PIPEFORCE-style token: the parameter " + param + " (query string or form field) carries the value stored at the secret reference."
	case "standard":
		return hook, "Standard Webhooks: signed with the whsec_ secret stored at the secret reference (webhook-id, webhook-timestamp, webhook-signature)."
	case "github":
		return hook, "GitHub: payload URL above, content type application/json, the webhook secret stored at the secret reference."
	case "stripe":
		return hook, "Stripe: endpoint URL above, signed with the endpoint's signing secret stored at the secret reference."
	}
	return hook, "Post to the URL above with the credential stored at the secret reference."
}

func (c *Console) baseURL(ctx *fiber.Ctx) string {
	return ctx.BaseURL() + c.cfg.BasePath
}

func (c *Console) sourcesPage(ctx *fiber.Ctx) error {
	return c.renderSources(ctx, fiber.StatusOK, flashOf(ctx), "")
}

func (c *Console) renderSources(ctx *fiber.Ctx, status int, flash, errMsg string) error {
	octx, cancel := opCtx(ctx)
	defer cancel()
	var v sourcesView
	base := c.baseURL(ctx)
	for _, s := range c.cfg.Sources.Sources() {
		r := sourceRow{SourceInfo: s}
		r.URL, r.How = sourceURL(base, s)
		sctx, cancel := context.WithTimeout(octx, 2*time.Second)
		_, err := c.cfg.Secrets.Secrets(sctx, s.Secret)
		cancel()
		if err != nil {
			switch hookgate.ErrorCode(err) {
			case hookgate.ENotFound:
				r.Broken = c.cfg.Secrets.Redact(hookgate.ErrorMessage(err))
				if !strings.Contains(r.Broken, "not found") {
					r.Broken = "secret not found: " + r.Broken
				}
			case hookgate.EUnavailable:
				r.Broken = "secret store unavailable"
			default:
				r.Broken = "secret unreadable: " + c.cfg.Secrets.Redact(hookgate.ErrorMessage(err))
			}
		}
		v.Sources = append(v.Sources, r)
	}
	return c.render(ctx, status, "sources", view{Title: "Sources", Nav: "sources", Flash: flash, Error: errMsg, Data: v})
}

type sourceFormView struct {
	Edit      bool
	Source    admin.SourceBody
	Options   string
	Rate      string
	Providers []string
}

func (c *Console) sourceForm(ctx *fiber.Ctx) error {
	v := sourceFormView{Providers: c.cfg.Providers}
	if id := clean(ctx.Params("id")); id != "" {
		var found *gateway.SourceInfo
		for _, s := range c.cfg.Sources.Sources() {
			if s.ID == id {
				found = &s
				break
			}
		}
		if found == nil {
			return c.fail(ctx, fiber.StatusNotFound, fmt.Sprintf("There is no source %q.", id))
		}
		if !found.Runtime {
			return c.fail(ctx, fiber.StatusConflict, fmt.Sprintf("Source %q is defined in the config file and is read-only here.", id))
		}
		v.Edit = true
		v.Source = admin.SourceBody{ID: found.ID, Provider: found.Provider, Secret: found.Secret, Event: found.Event,
			AuthParameter: found.AuthParameter, MaxBodyBytes: found.MaxBodyBytes, Rate: found.Rate, Options: found.Options}
		v.Options = formatOptions(found.Options)
		if found.Rate != nil {
			v.Rate = fmt.Sprintf("%g/%d", found.Rate.PerSecond, found.Rate.Burst)
		}
	}
	title := "New source"
	if v.Edit {
		title = "Edit source " + v.Source.ID
	}
	return c.render(ctx, fiber.StatusOK, "source_form", view{Title: title, Nav: "sources", Data: v})
}

func formatOptions(o map[string]string) string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + o[k] + "\n")
	}
	return b.String()
}

// saveSource is the source form's POST: the admin API's PutSource, its
// validation messages shown above the form kept as typed.
func (c *Console) saveSource(ctx *fiber.Ctx) error {
	b := admin.SourceBody{
		ID: clean(ctx.FormValue("id")), Provider: clean(ctx.FormValue("provider")), Secret: clean(ctx.FormValue("secret")),
		Event: clean(ctx.FormValue("event")), AuthParameter: clean(ctx.FormValue("auth_parameter")),
	}
	edit := ctx.FormValue("edit") == "1"
	v := sourceFormView{Edit: edit, Source: b, Providers: c.cfg.Providers, Options: ctx.FormValue("options"), Rate: clean(ctx.FormValue("rate"))}
	var problems []string
	if s := clean(ctx.FormValue("max_body_bytes")); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			problems = append(problems, "max body bytes: want a whole number of bytes")
		}
		b.MaxBodyBytes = n
	}
	if v.Rate != "" {
		ps, bs, ok := strings.Cut(v.Rate, "/")
		per, err1 := strconv.ParseFloat(strings.TrimSpace(ps), 64)
		burst, err2 := strconv.Atoi(strings.TrimSpace(bs))
		if !ok || err1 != nil || err2 != nil {
			problems = append(problems, "rate: want per_second/burst, e.g. 10/20")
		} else {
			b.Rate = &config.Rate{PerSecond: per, Burst: burst}
		}
	}
	opts, err := parseOptions(v.Options)
	if err != nil {
		problems = append(problems, err.Error())
	}
	b.Options = opts
	if len(v.Options) > 16<<10 {
		problems = append(problems, "options: at most 16 KiB")
	}
	v.Source = b
	again := func(status int, msg string) error {
		title := "New source"
		if edit {
			title = "Edit source " + b.ID
		}
		return c.render(ctx, status, "source_form", view{Title: title, Nav: "sources", Error: msg, Data: v})
	}
	if b.ID == "" {
		problems = append(problems, "source.id: must be set")
	}
	if len(problems) > 0 {
		return again(fiber.StatusBadRequest, strings.Join(problems, "; "))
	}
	if !edit {
		if _, _, exists := c.sourceExists(b.ID); exists {
			return again(fiber.StatusConflict, fmt.Sprintf("A source %q exists already; edit it instead.", b.ID))
		}
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	if _, err := c.cfg.Sources.PutSource(octx, b.ID, b); err != nil {
		return again(gateway.Status(hookgate.ErrorCode(err)), c.problem(err, "save the source"))
	}
	c.log.Info("console: source saved", "source", b.ID, "remote_addr", ctx.IP())
	return ctx.Redirect(Prefix+"/sources?saved="+url.QueryEscape(b.ID), fiber.StatusSeeOther)
}

func (c *Console) sourceExists(id string) (gateway.SourceInfo, bool, bool) {
	for _, s := range c.cfg.Sources.Sources() {
		if s.ID == id {
			return s, s.Runtime, true
		}
	}
	return gateway.SourceInfo{}, false, false
}

// parseOptions reads "name=value" lines.
func parseOptions(s string) (map[string]string, error) {
	var out map[string]string
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("options line %d: want name=value", i+1)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return out, nil
}

func (c *Console) deleteSource(ctx *fiber.Ctx) error {
	id := clean(ctx.Params("id"))
	octx, cancel := opCtx(ctx)
	defer cancel()
	if err := c.cfg.Sources.DeleteSource(octx, id); err != nil {
		return c.renderSources(ctx, gateway.Status(hookgate.ErrorCode(err)), "", c.problem(err, "delete the source"))
	}
	c.log.Info("console: source deleted", "source", id, "remote_addr", ctx.IP())
	return ctx.Redirect(Prefix+"/sources?deleted="+url.QueryEscape(id), fiber.StatusSeeOther)
}

// -------------------------------------------------------------------- live

func (c *Console) livePage(ctx *fiber.Ctx) error {
	return c.render(ctx, fiber.StatusOK, "live", view{Title: "Live", Nav: "live", Data: struct{ Source, Event string }{
		clean(ctx.Query("source")), clean(ctx.Query("event"))}})
}

// ----------------------------------------------------------------- history

type historyView struct {
	Form           historyForm
	Rows           []hookgate.Exchange
	Page           int
	Prev, Next     string // query strings of the neighbouring pages; "" = none
	Err            string
	Unavailable    bool
	Outcomes       []string
	FirstRow, Last int
}

type historyForm struct {
	Source, Event, Outcome, Status, Direction, From, To, EventID string
}

const pageRows = 50

// timeForm is the layout of the history form's time fields (UTC).
const timeForm = "2006-01-02T15:04"

func (f historyForm) query(page int) string {
	q := url.Values{}
	for _, kv := range [][2]string{{"source", f.Source}, {"event", f.Event}, {"outcome", f.Outcome}, {"status", f.Status},
		{"direction", f.Direction}, {"from", f.From}, {"to", f.To}, {"event_id", f.EventID}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	if page > 1 {
		q.Set("page", strconv.Itoa(page))
	}
	return q.Encode()
}

func (c *Console) historyPage(ctx *fiber.Ctx) error {
	f := historyForm{
		Source: clean(ctx.Query("source")), Event: clean(ctx.Query("event")), Outcome: clean(ctx.Query("outcome")),
		Status: clean(ctx.Query("status")), Direction: clean(ctx.Query("direction")), From: clean(ctx.Query("from")),
		To: clean(ctx.Query("to")), EventID: clean(ctx.Query("event_id")),
	}
	page, _ := strconv.Atoi(ctx.Query("page"))
	page = max(page, 1)
	v := historyView{Form: f, Page: page, Outcomes: []string{"accepted", "duplicate", "rejected", "ok", "retry", "failed", "dead", "suppressed"}}
	af := analytics.Filter{Source: f.Source, Event: f.Event, Outcome: f.Outcome, EventID: f.EventID,
		Offset: (page - 1) * pageRows, Limit: pageRows + 1}
	var problems []string
	if f.Status != "" {
		n, err := strconv.ParseUint(f.Status, 10, 16)
		if err != nil {
			problems = append(problems, "status: want an HTTP status such as 401")
		}
		af.Status = uint16(n)
	}
	switch f.Direction {
	case "":
	case "inbound", "outbound":
		af.Direction = hookgate.ParseDirection(f.Direction)
	default:
		problems = append(problems, "direction: inbound or outbound")
	}
	for _, t := range []struct {
		name, val string
		to        *time.Time
	}{{"from", f.From, &af.From}, {"to", f.To, &af.To}} {
		if t.val == "" {
			continue
		}
		tm, err := time.ParseInLocation(timeForm, t.val, time.UTC)
		if err != nil {
			if tm, err = time.Parse(time.RFC3339, t.val); err != nil {
				problems = append(problems, t.name+": want a time such as 2026-01-02T15:04 (UTC)")
			}
		}
		*t.to = tm
	}
	if err := af.Normalize(); err != nil && len(problems) == 0 {
		problems = append(problems, strings.TrimPrefix(err.Error(), "analytics: "))
	}
	status := fiber.StatusOK
	switch {
	case len(problems) > 0:
		v.Err, status = strings.Join(problems, "; "), fiber.StatusBadRequest
	case c.cfg.History == nil:
		v.Unavailable = true
	default:
		octx, cancel := opCtx(ctx)
		defer cancel()
		rows, err := c.cfg.History.Search(octx, af)
		if analytics.NotYet(err) {
			rows, err = nil, nil
		}
		if err != nil {
			v.Err, status = c.problem(err, "search history"), fiber.StatusServiceUnavailable
			break
		}
		if len(rows) > pageRows {
			rows = rows[:pageRows]
			v.Next = f.query(page + 1)
		}
		if page > 1 {
			v.Prev = f.query(page - 1)
		}
		v.Rows = rows
		v.FirstRow, v.Last = af.Offset+1, af.Offset+len(rows)
	}
	vw := view{Title: "History", Nav: "history", Data: v}
	if ctx.Get("HX-Request") != "" && ctx.Get("HX-Target") == "results" {
		return c.renderFragment(ctx, status, "history", "results", vw)
	}
	return c.render(ctx, status, "history", vw)
}

type exchangeView struct {
	X                                     hookgate.Exchange
	Headers, RequestBody, ResponseBody    string
	HeadersJSON, RequestJSON, ResponseJSN bool
}

func (c *Console) exchangePage(ctx *fiber.Ctx) error {
	if c.cfg.History == nil {
		return c.fail(ctx, fiber.StatusServiceUnavailable, "History is not readable from this gateway.")
	}
	id := clean(ctx.Params("id"))
	octx, cancel := opCtx(ctx)
	defer cancel()
	x, err := c.cfg.History.Exchange(octx, id)
	if errors.Is(err, analytics.ErrNotFound) {
		return c.fail(ctx, fiber.StatusNotFound, fmt.Sprintf("No exchange %s in history (yet: rows are written in batches).", id))
	}
	if err != nil {
		return c.fail(ctx, fiber.StatusServiceUnavailable, c.problem(err, "read history"))
	}
	r := c.cfg.Secrets.Redact
	x.URL, x.Error, x.RemoteAddr = r(x.URL), r(x.Error), r(x.RemoteAddr)
	v := exchangeView{X: x, Headers: pretty(r(x.RequestHeaders)), RequestBody: pretty(r(x.RequestBody)), ResponseBody: pretty(r(x.ResponseBody))}
	return c.render(ctx, fiber.StatusOK, "exchange", view{Title: "Exchange", Nav: "history", Data: v})
}

// pretty indents a JSON text; anything else is returned as it is.
func pretty(s string) string {
	t := strings.TrimSpace(s)
	if t == "" || (t[0] != '{' && t[0] != '[') {
		return s
	}
	var b bytes.Buffer
	if json.Indent(&b, []byte(t), "", "  ") != nil {
		return s
	}
	return b.String()
}

type traceRow struct {
	X           hookgate.Exchange
	What        string
	OffsetMS    int64
	Left, Width float64 // percent of the timeline
}

type traceView struct {
	EventID string
	Rows    []traceRow
	SpanMS  int64
}

func (c *Console) tracePage(ctx *fiber.Ctx) error {
	if c.cfg.History == nil {
		return c.fail(ctx, fiber.StatusServiceUnavailable, "History is not readable from this gateway.")
	}
	id := clean(ctx.Params("id"))
	octx, cancel := opCtx(ctx)
	defer cancel()
	rows, err := analytics.Trace(octx, c.cfg.History, id)
	if errors.Is(err, analytics.ErrNotFound) {
		return c.fail(ctx, fiber.StatusNotFound, fmt.Sprintf("No history rows for event %s (yet: rows are written in batches).", id))
	}
	if err != nil {
		return c.fail(ctx, fiber.StatusServiceUnavailable, c.problem(err, "read the trace"))
	}
	v := traceView{EventID: id}
	start := rows[0].TS
	var end time.Time
	for _, x := range rows {
		if e := x.TS.Add(time.Duration(float64(x.DurationMS) * float64(time.Millisecond))); e.After(end) {
			end = e
		}
	}
	span := max(end.Sub(start), time.Millisecond)
	v.SpanMS = span.Milliseconds()
	for _, x := range rows {
		x.URL, x.Error = c.cfg.Secrets.Redact(x.URL), c.cfg.Secrets.Redact(x.Error)
		what := x.Operation
		if x.Direction == hookgate.Inbound {
			what = "inbound " + x.Event
		}
		off := x.TS.Sub(start)
		v.Rows = append(v.Rows, traceRow{
			X: x, What: what, OffsetMS: off.Milliseconds(),
			Left:  100 * float64(off) / float64(span),
			Width: max(0.5, 100*float64(x.DurationMS)*float64(time.Millisecond)/float64(span)),
		})
	}
	return c.render(ctx, fiber.StatusOK, "trace", view{Title: "Trace " + id, Nav: "history", Data: v})
}

// ------------------------------------------------------------ dead letters

type deadRow struct {
	jobs.DeadJob
	Route string
}

type deadView struct {
	Jobs      []deadRow
	Total     int
	Truncated bool
}

// maxDeadShown bounds the dead-letter list.
const maxDeadShown = 500

func routeOf(j jobs.Job) string {
	var p struct {
		Route string `json:"route"`
	}
	if j.Kind == routes.JobKind && json.Unmarshal(j.Payload, &p) == nil {
		return p.Route
	}
	return ""
}

func (c *Console) deadList(ctx context.Context) ([]deadRow, error) {
	list, err := c.cfg.Dead.Dead(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]deadRow, len(list))
	r := c.cfg.Secrets.Redact
	for i, d := range list {
		d.LastError = r(d.LastError)
		d.Job.Payload = nil
		out[i] = deadRow{DeadJob: d, Route: routeOf(list[i].Job)}
	}
	return out, nil
}

func (c *Console) deadPage(ctx *fiber.Ctx) error {
	return c.renderDead(ctx, fiber.StatusOK, flashOf(ctx), "")
}

func flashOf(ctx *fiber.Ctx) string {
	switch {
	case ctx.Query("replayed") != "":
		return "Replayed " + clean(ctx.Query("replayed")) + " job(s)."
	case ctx.Query("enabled") != "":
		return "Route " + clean(ctx.Query("enabled")) + " enabled."
	case ctx.Query("saved") != "":
		return "Source " + clean(ctx.Query("saved")) + " saved."
	case ctx.Query("deleted") != "":
		return "Source " + clean(ctx.Query("deleted")) + " deleted."
	}
	return ""
}

func (c *Console) renderDead(ctx *fiber.Ctx, status int, flash, errMsg string) error {
	if c.cfg.Dead == nil {
		return c.fail(ctx, fiber.StatusNotFound, "Dead letters are not available on this gateway.")
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	var v deadView
	list, err := c.deadList(octx)
	if err != nil {
		errMsg, status = c.problem(err, "list the dead letters"), fiber.StatusServiceUnavailable
	}
	v.Total = len(list)
	if len(list) > maxDeadShown {
		list, v.Truncated = list[len(list)-maxDeadShown:], true
	}
	slices.Reverse(list) // newest first
	v.Jobs = list
	return c.render(ctx, status, "dead", view{Title: "Dead letters", Nav: "dead", Flash: flash, Error: errMsg, Data: v})
}

type deadJobView struct {
	Job     deadRow
	Payload string
}

func (c *Console) deadJobPage(ctx *fiber.Ctx) error {
	if c.cfg.Dead == nil {
		return c.fail(ctx, fiber.StatusNotFound, "Dead letters are not available on this gateway.")
	}
	id := clean(ctx.Query("id"))
	octx, cancel := opCtx(ctx)
	defer cancel()
	list, err := c.cfg.Dead.Dead(octx)
	if err != nil {
		return c.fail(ctx, fiber.StatusServiceUnavailable, c.problem(err, "list the dead letters"))
	}
	for _, d := range list {
		if d.Job.ID == id {
			r := c.cfg.Secrets.Redact
			payload := pretty(r(string(d.Job.Payload)))
			d.LastError = r(d.LastError)
			return c.render(ctx, fiber.StatusOK, "dead_job", view{Title: "Dead job", Nav: "dead",
				Data: deadJobView{Job: deadRow{DeadJob: d, Route: routeOf(d.Job)}, Payload: payload}})
		}
	}
	return c.fail(ctx, fiber.StatusNotFound, fmt.Sprintf("No dead job %q: it may have been replayed already.", id))
}

// maxReplay bounds one selection replay.
const maxReplay = 500

// replay is POST /console/dead/replay: every id posted (one button or a
// selection), each replayed on its own; failures are listed.
func (c *Console) replay(ctx *fiber.Ctx) error {
	if c.cfg.Dead == nil {
		return c.fail(ctx, fiber.StatusNotFound, "Dead letters are not available on this gateway.")
	}
	// a row's own button names one job (one=ID); the selection is id=ID...
	var ids []string
	if one := clean(ctx.FormValue("one")); one != "" {
		ids = []string{one}
	} else {
		ctx.Request().PostArgs().VisitAll(func(k, v []byte) {
			if string(k) == "id" && len(ids) < maxReplay+1 {
				ids = append(ids, clean(string(v)))
			}
		})
	}
	if len(ids) == 0 {
		return c.renderDead(ctx, fiber.StatusBadRequest, "", "Select at least one job to replay.")
	}
	if len(ids) > maxReplay {
		return c.renderDead(ctx, fiber.StatusBadRequest, "", fmt.Sprintf("At most %d jobs at once.", maxReplay))
	}
	octx, cancel := context.WithTimeout(ctx.UserContext(), 60*time.Second)
	defer cancel()
	var failed []string
	done := 0
	for _, id := range ids {
		if err := c.cfg.Dead.Replay(octx, id); err != nil {
			if errors.Is(err, jobs.ErrNotFound) {
				failed = append(failed, id+": not dead any more (replayed already?)")
			} else {
				failed = append(failed, id+": "+c.problem(err, "replay"))
			}
			continue
		}
		done++
	}
	c.log.Info("console: dead jobs replayed", "replayed", done, "failed", len(failed), "remote_addr", ctx.IP())
	if len(failed) > 0 {
		return c.renderDead(ctx, fiber.StatusConflict, fmt.Sprintf("Replayed %d job(s).", done), "Not replayed: "+strings.Join(failed, "; "))
	}
	return ctx.Redirect(Prefix+"/dead?replayed="+strconv.Itoa(done), fiber.StatusSeeOther)
}

// ------------------------------------------------------------------ routes

type routeRow struct {
	Name     string
	Disabled *routes.DisabledRoute
	Dead     int
	Waiting  string // jobs waiting; "–" unknown
	Oldest   string // age of the oldest waiting job
}

type routesView struct {
	Routes  []routeRow
	Lag     string
	Partial bool
}

func (c *Console) routesPage(ctx *fiber.Ctx) error {
	return c.renderRoutes(ctx, fiber.StatusOK, flashOf(ctx), "")
}

func (c *Console) renderRoutes(ctx *fiber.Ctx, status int, flash, errMsg string) error {
	if c.cfg.Routes == nil {
		return c.fail(ctx, fiber.StatusNotFound, "Routes are not available on this gateway.")
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	v := routesView{Lag: "–"}
	disabled, err := c.cfg.Routes.Disabled(octx)
	if err != nil {
		errMsg, status = c.problem(err, "list the disabled routes"), fiber.StatusServiceUnavailable
	}
	dead := map[string]int{}
	if c.cfg.Dead != nil {
		if list, err := c.cfg.Dead.Dead(octx); err == nil {
			for _, d := range list {
				dead[routeOf(d.Job)]++
			}
		}
	}
	var lag *Lag
	if c.cfg.RouteLag != nil {
		if l, err := c.cfg.RouteLag(octx); err == nil {
			lag = &l
			v.Lag, v.Partial = strconv.FormatUint(l.Events, 10), l.Partial
		} else {
			c.log.Warn("console: route lag", "err", c.cfg.Secrets.Redact(err.Error()))
		}
	}
	now := c.cfg.Now()
	for _, name := range c.cfg.Routes.Routes() {
		r := routeRow{Name: name, Dead: dead[name], Waiting: "–", Oldest: "–"}
		if lag != nil {
			j := lag.Jobs[name]
			r.Waiting = strconv.Itoa(j.Waiting)
			if j.Waiting > 0 {
				r.Oldest = now.Sub(j.Oldest).Round(time.Second).String()
			}
		}
		for i := range disabled {
			if disabled[i].Route == name {
				d := disabled[i]
				d.URL, d.Error = c.cfg.Secrets.Redact(d.URL), c.cfg.Secrets.Redact(d.Error)
				r.Disabled = &d
			}
		}
		v.Routes = append(v.Routes, r)
	}
	return c.render(ctx, status, "routes", view{Title: "Routes", Nav: "routes", Flash: flash, Error: errMsg, Data: v})
}

func (c *Console) enableRoute(ctx *fiber.Ctx) error {
	if c.cfg.Routes == nil {
		return c.fail(ctx, fiber.StatusNotFound, "Routes are not available on this gateway.")
	}
	name := clean(ctx.Params("name"))
	if u, err := url.PathUnescape(name); err == nil {
		name = u
	}
	if !slices.Contains(c.cfg.Routes.Routes(), name) {
		return c.renderRoutes(ctx, fiber.StatusNotFound, "", fmt.Sprintf("There is no route %q.", name))
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	if err := c.cfg.Routes.Enable(octx, name); err != nil {
		return c.renderRoutes(ctx, fiber.StatusServiceUnavailable, "", c.problem(err, "enable the route"))
	}
	c.log.Info("console: route enabled", "route", name, "remote_addr", ctx.IP())
	return ctx.Redirect(Prefix+"/routes?enabled="+url.QueryEscape(name), fiber.StatusSeeOther)
}
