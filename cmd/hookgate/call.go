package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/outbound"
)

// cmdCall makes one Bitrix24 REST call and prints its JSON answer:
//
//	hookgate call main crm.deal.add 'fields[TITLE]=Acme' 'fields[OPPORTUNITY]=100'
//
// An API error is printed as {"error":..,"error_description":..} on stdout
// with exit status 1. The call goes through the same rate limit, breaker
// and retries as serve's calls (its own bucket: it does not share the
// running gateway's).
func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("call", stderr)
	if err := parseArgs(fs, args); err != nil {
		return parseExit(err)
	}
	if fs.NArg() < 2 {
		fmt.Fprintln(stderr, "usage: hookgate call [--config FILE] PORTAL METHOD [key=value ...]")
		return exitError(2)
	}
	portalID, method := fs.Arg(0), fs.Arg(1)
	params, err := callParams(fs.Args()[2:])
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
	ref := p.Secret
	client, err := outbound.NewBitrix24(*p, func(ctx context.Context) (hookgate.Secret, error) {
		return secrets.Secret(ctx, ref)
	}, outbound.WithLogger(log))
	if err != nil {
		return err
	}
	res, err := client.Call(ctx, method, params)
	var apiErr *outbound.APIError
	if errors.As(err, &apiErr) {
		out, _ := json.Marshal(map[string]any{"error": apiErr.Code, "error_description": apiErr.Description, "status": apiErr.Status})
		fmt.Fprintln(stdout, string(out))
		return exitError(1)
	}
	if err != nil {
		return errors.New(secrets.Redact(err.Error()))
	}
	out := map[string]any{"result": res.Result}
	if res.Next != nil {
		out["next"] = *res.Next
	}
	if res.Total != nil {
		out["total"] = *res.Total
	}
	b, err := json.MarshalIndent(out, "", "  ")
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
