package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// MaxBatch is the most commands one batch call may hold.
const MaxBatch = 50

// BatchCmd is one command of a batch. Params may refer to earlier
// commands' results: "$result[<key>][ID]".
type BatchCmd struct {
	Key    string // "" = its index
	Method string
	Params map[string]any
}

// BatchResult holds the per-command outcome of a batch, by command key.
type BatchResult struct {
	Results map[string]json.RawMessage
	Errors  map[string]*APIError // commands that failed (Status 0)
	Totals  map[string]int
	Nexts   map[string]int
	Times   map[string]Time
	Time    Time // of the batch call itself
}

// Batch runs up to 50 commands in one call, in order; with halt the portal
// stops at the first failing command. The call itself fails only when the
// batch request does; failed commands are in Errors.
func (b *Bitrix24) Batch(ctx context.Context, cmds []BatchCmd, halt bool) (*BatchResult, error) {
	if len(cmds) == 0 || len(cmds) > MaxBatch {
		return nil, fmt.Errorf("%w, got %d", ErrBatchSize, len(cmds))
	}
	var body strings.Builder
	if halt {
		body.WriteString("halt=1")
	} else {
		body.WriteString("halt=0")
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(cmds)) // for the call's span
	methods := map[string]string{}
	for i, c := range cmds {
		key := c.Key
		if key == "" {
			key = strconv.Itoa(i)
		}
		if seen[key] {
			return nil, fmt.Errorf("batch: duplicate command key %q", key)
		}
		seen[key] = true
		methods[key] = c.Method
		if strings.ContainsAny(key, "[]&=") {
			return nil, fmt.Errorf("batch: bad command key %q", key)
		}
		if err := checkMethod(c.Method); err != nil {
			return nil, fmt.Errorf("batch command %q: %w", key, err)
		}
		q, err := EncodeParams(c.Params)
		if err != nil {
			return nil, fmt.Errorf("batch command %q: %w", key, err)
		}
		names = append(names, key+"="+c.Method)
		cmd := c.Method
		if q != "" {
			cmd += "?" + q
		}
		body.WriteString("&" + url.QueryEscape("cmd["+key+"]") + "=" + url.QueryEscape(cmd))
	}
	res, err := b.call(withBatchCommands(batchReads(ctx, cmds), names), "batch", body.String())
	if err != nil {
		return nil, err
	}
	var raw struct {
		Result      json.RawMessage `json:"result"`
		ResultError json.RawMessage `json:"result_error"`
		ResultTotal json.RawMessage `json:"result_total"`
		ResultNext  json.RawMessage `json:"result_next"`
		ResultTime  json.RawMessage `json:"result_time"`
	}
	if err := json.Unmarshal(res.Result, &raw); err != nil {
		return nil, fmt.Errorf("batch: read answer: %w", err)
	}
	out := &BatchResult{
		Results: map[string]json.RawMessage{},
		Errors:  map[string]*APIError{},
		Totals:  map[string]int{},
		Nexts:   map[string]int{},
		Times:   map[string]Time{},
		Time:    res.Time,
	}
	if err := members(raw.Result, out.Results); err != nil {
		return nil, fmt.Errorf("batch: read result: %w", err)
	}
	var errs = map[string]struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{}
	if err := members(raw.ResultError, errs); err != nil {
		return nil, fmt.Errorf("batch: read result_error: %w", err)
	}
	for k, e := range errs {
		out.Errors[k] = &APIError{Code: e.Error, Description: e.Description}
	}
	if err := members(raw.ResultTotal, out.Totals); err != nil {
		return nil, fmt.Errorf("batch: read result_total: %w", err)
	}
	if err := members(raw.ResultNext, out.Nexts); err != nil {
		return nil, fmt.Errorf("batch: read result_next: %w", err)
	}
	if err := members(raw.ResultTime, out.Times); err != nil {
		return nil, fmt.Errorf("batch: read result_time: %w", err)
	}
	// The batch took one token; its commands count towards their own
	// methods' operating time: hold a method near or at its limit.
	for k, m := range methods {
		t, ok := out.Times[k]
		if ok {
			b.noteTime(m, &t)
		}
		if e := out.Errors[k]; e != nil {
			if ok && e.Time == nil && e.Code == CodeOperationTimeLimit {
				e.Time = &t
			}
			b.noteOperating(m, e)
		}
	}
	return out, nil
}

// members reads a batch member into dst: an object by key, an array by
// index (cmd sent as an array), or [] / null for none. Null entries of an
// array (failed commands) are skipped.
func members[T any](raw json.RawMessage, dst map[string]T) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if raw[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		for i, v := range list {
			if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
				continue
			}
			var t T
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			dst[strconv.Itoa(i)] = t
		}
		return nil
	}
	var m map[string]T
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	for k, v := range m {
		dst[k] = v
	}
	return nil
}
