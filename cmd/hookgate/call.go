package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/outbound"
	"github.com/hookgate/hookgate/vault"
)

const callUsage = `usage: hookgate call [--config FILE] PORTAL METHOD [key=value ...]

Make one Bitrix24 REST call on a configured portal and print its JSON
answer: {"result": ...} (with "next" and "total" for list methods). An
error answer of the portal is printed as {"error", "error_description",
"status"} with exit status 1.

  hookgate call main crm.deal.get id=1
  hookgate call main crm.deal.add 'fields[TITLE]=Acme' 'fields[OPPORTUNITY]=100'
  hookgate call main crm.deal.list 'select[]=ID' 'select[]=TITLE'

Beside a running gateway (answering on server.listen) the call goes
through its admin API, POST /admin/call/PORTAL/METHOD: it shares the
portal's rate bucket, breaker and history with the gateway's own calls.
On its own, or when the gateway runs without the admin API (admin.token
unset; a note on stderr says so), it calls the portal itself and writes
one history row per attempt.

flags:
`

// cmdCall makes one Bitrix24 REST call and prints its JSON answer. Like
// every outbound exchange, each attempt is a history row and goes through
// the portal's bucket and breaker: the running gateway's, through its admin
// API, when one answers on server.listen; else its own.
func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("call", stderr)
	pos, err := parseUsage(fs, args, callUsage, stdout, stderr, func(pos []string) bool { return len(pos) >= 2 })
	if err != nil {
		return parseExit(err)
	}
	portalID, method := pos[0], pos[1]
	params, err := callParams(pos[2:])
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	p := cfg.PortalByID(portalID)
	if p == nil {
		return fmt.Errorf("unknown portal %q", portalID)
	}
	log, redact := newLogger(cfg.Log, stderr)
	secrets, err := openSecrets(ctx, cfg, log, redact)
	if err != nil {
		return err
	}
	defer secrets.Close()

	base, running := runningGateway(ctx, cfg)
	if running && cfg.Admin.Token != "" {
		return callThroughGateway(ctx, base, cfg, secrets, portalID, method, params, stdout)
	}
	if running {
		fmt.Fprintf(stderr, "hookgate call: the gateway at %s runs without the admin API (admin.token unset): "+
			"calling the portal directly, with a rate bucket and breaker of its own\n", base)
	}
	return callLocally(ctx, cfg, p, secrets, log, running, method, params, stdout)
}

// callLocally makes the call with a client of its own, recording each
// attempt in history.
func callLocally(ctx context.Context, cfg *config.Config, p *config.Portal, secrets *vault.Store, log *slog.Logger,
	beside bool, method string, params map[string]any, stdout io.Writer) error {
	rec, closeHist, err := openCLIHistory(ctx, cfg, secrets, log, beside)
	if err != nil {
		return err
	}
	defer closeHist()
	ref := p.Secret
	client, err := outbound.NewBitrix24(*p, func(ctx context.Context) (hookgate.Secret, error) {
		return secrets.Secret(ctx, ref)
	}, outbound.WithRecorder(rec), outbound.WithLogger(log), outbound.WithRetries(p.Retries))
	if err != nil {
		return err
	}
	res, err := client.Call(ctx, method, params)
	var apiErr *outbound.APIError
	if errors.As(err, &apiErr) {
		out, _ := json.Marshal(map[string]any{"error": apiErr.Code, "error_description": secrets.Redact(apiErr.Description), "status": apiErr.Status})
		fmt.Fprintln(stdout, string(out))
		return exitError(1)
	}
	if err != nil {
		return errors.New(secrets.Redact(err.Error()))
	}
	return printCallResult(stdout, res.Result, res.Next, res.Total)
}

// callThroughGateway posts the call to the running gateway's admin API.
func callThroughGateway(ctx context.Context, base string, cfg *config.Config, secrets *vault.Store,
	portal, method string, params map[string]any, stdout io.Writer) error {
	token, err := secrets.Secret(ctx, cfg.Admin.Token)
	if err != nil {
		return fmt.Errorf("admin.token: %w", err)
	}
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	u := base + "/admin/call/" + url.PathEscape(portal) + "/" + url.PathEscape(method)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("call through the gateway at %s: %w", base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("call through the gateway at %s: %w", base, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var res struct {
			Result json.RawMessage `json:"result"`
			Next   *int            `json:"next"`
			Total  *int            `json:"total"`
		}
		if err := json.Unmarshal(answer, &res); err != nil {
			return fmt.Errorf("call through the gateway at %s: answer is not JSON: %w", base, err)
		}
		return printCallResult(stdout, res.Result, res.Next, res.Total)
	case http.StatusBadGateway: // the portal's error answer, as Bitrix24 gave it
		var apiErr struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
			Status      int    `json:"status"`
		}
		if json.Unmarshal(answer, &apiErr) == nil && apiErr.Code != "" {
			out, _ := json.Marshal(map[string]any{"error": apiErr.Code, "error_description": apiErr.Description, "status": apiErr.Status})
			fmt.Fprintln(stdout, string(out))
			return exitError(1)
		}
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(answer, &e)
	msg := strings.TrimSpace(e.Error + ": " + e.Message)
	if e.Error == "" {
		msg = strings.TrimSpace(string(answer))
	}
	if resp.StatusCode == http.StatusUnauthorized {
		msg += " (the gateway's admin.token differs from this config's)"
	}
	return fmt.Errorf("call through the gateway at %s: %d %s", base, resp.StatusCode, secrets.Redact(msg))
}

// runningGateway reports whether a gateway answers /healthz on
// server.listen, and its base URL.
func runningGateway(ctx context.Context, cfg *config.Config) (string, bool) {
	host, port, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: loopback is one
	}
	base := "http://" + net.JoinHostPort(host, port)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return "", false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	resp.Body.Close()
	return base, resp.StatusCode == http.StatusOK
}

// printCallResult prints a successful answer as Bitrix24 gives it, result
// first.
func printCallResult(stdout io.Writer, result json.RawMessage, next, total *int) error {
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	b, err := json.MarshalIndent(struct {
		Result json.RawMessage `json:"result"`
		Next   *int            `json:"next,omitempty"`
		Total  *int            `json:"total,omitempty"`
	}{result, next, total}, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// callParams turns key=value arguments into params; bracketed keys
// (fields[TITLE]) are passed as Bitrix24 reads them; "key[]=v" repeated
// makes a list (select[]=ID select[]=TITLE).
func callParams(args []string) (map[string]any, error) {
	params := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parameter %q: want key=value", a)
		}
		if name, ok := strings.CutSuffix(k, "[]"); ok {
			list, _ := params[name].([]any)
			params[name] = append(list, v)
			continue
		}
		if prev, dup := params[k]; dup {
			switch p := prev.(type) {
			case []any:
				params[k] = append(p, v)
			default:
				params[k] = []any{p, v}
			}
			continue
		}
		params[k] = v
	}
	return params, nil
}
