package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"strconv"
	"strings"
)

// List pages a list method in offset mode (start = 0, 50, ... following
// "next") and yields every row. A failed page yields the error and ends
// the sequence. Rows may shift between pages if the data changes while
// paging; ListFast does not have that problem.
func (b *Bitrix24) List(ctx context.Context, method string, params map[string]any) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		p := maps.Clone(params)
		if p == nil {
			p = map[string]any{}
		}
		start := 0
		for {
			p["start"] = start
			res, err := b.Call(ctx, method, p)
			if err != nil {
				yield(nil, err)
				return
			}
			rows, err := rowsOf(res.Result)
			if err != nil {
				yield(nil, fmt.Errorf("list %s: %w", method, err))
				return
			}
			for _, r := range rows {
				if !yield(r, nil) {
					return
				}
			}
			if res.Next == nil || *res.Next <= start || len(rows) == 0 {
				return
			}
			start = *res.Next
		}
	}
}

// ListFast scans a list method the fast way: order[ID]=ASC,
// filter[>ID]=<last id>, start=-1 (no count), until a page holds fewer
// than 50 rows. Any order in params is replaced; ID is added to select.
func (b *Bitrix24) ListFast(ctx context.Context, method string, params map[string]any) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		p := maps.Clone(params)
		if p == nil {
			p = map[string]any{}
		}
		filter, err := stringMap(p["filter"])
		if err != nil {
			yield(nil, fmt.Errorf("list %s: filter: %w", method, err))
			return
		}
		if sel, ok := p["select"]; ok {
			p["select"] = withID(sel)
		}
		p["order"] = map[string]any{"ID": "ASC"}
		p["start"] = -1
		last := int64(0)
		for {
			f := maps.Clone(filter)
			f[">ID"] = last
			p["filter"] = f
			res, err := b.Call(ctx, method, p)
			if err != nil {
				yield(nil, err)
				return
			}
			rows, err := rowsOf(res.Result)
			if err != nil {
				yield(nil, fmt.Errorf("list %s: %w", method, err))
				return
			}
			for _, r := range rows {
				id, err := rowID(r)
				if err != nil {
					yield(nil, fmt.Errorf("list %s: %w", method, err))
					return
				}
				if id <= last {
					yield(nil, fmt.Errorf("list %s: ids not ascending (%d after %d)", method, id, last))
					return
				}
				last = id
				if !yield(r, nil) {
					return
				}
			}
			if len(rows) < pageSize {
				return
			}
		}
	}
}

const pageSize = 50

// rowsOf returns the rows of a list answer: an array, or an object with
// one array member ({"tasks":[...]}, {"items":[...]}).
func rowsOf(raw json.RawMessage) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	var rows []json.RawMessage
	if len(raw) > 0 && raw[0] == '[' {
		err := json.Unmarshal(raw, &rows)
		return rows, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("result is neither a list nor an object")
	}
	for _, v := range obj {
		if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '[' {
			if err := json.Unmarshal(v, &rows); err == nil {
				return rows, nil
			}
		}
	}
	if len(obj) == 0 {
		return nil, nil
	}
	return nil, fmt.Errorf("result object holds no list")
}

func rowID(r json.RawMessage) (int64, error) {
	var row map[string]any
	if err := json.Unmarshal(r, &row); err != nil {
		return 0, fmt.Errorf("row is not an object")
	}
	v, ok := row["ID"]
	if !ok {
		v, ok = row["id"]
	}
	if !ok {
		return 0, fmt.Errorf("row has no ID")
	}
	switch t := v.(type) {
	case string:
		return strconv.ParseInt(t, 10, 64)
	case float64:
		return int64(t), nil
	}
	return 0, fmt.Errorf("row ID %v is not a number", v)
}

// stringMap copies a filter given as any map with string keys.
func stringMap(v any) (map[string]any, error) {
	out := map[string]any{}
	if v == nil {
		return out, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return nil, fmt.Errorf("want a map, got %T", v)
	}
	for _, k := range rv.MapKeys() {
		out[k.String()] = rv.MapIndex(k).Interface()
	}
	return out, nil
}

// withID returns select with "ID" added when missing.
func withID(sel any) any {
	rv := reflect.ValueOf(sel)
	if rv.Kind() != reflect.Slice {
		return sel
	}
	out := make([]any, 0, rv.Len()+1)
	has := false
	for i := 0; i < rv.Len(); i++ {
		x := rv.Index(i).Interface()
		if s, ok := x.(string); ok && (strings.EqualFold(s, "ID") || s == "*") {
			has = true
		}
		out = append(out, x)
	}
	if !has {
		out = append(out, "ID")
	}
	return out
}
