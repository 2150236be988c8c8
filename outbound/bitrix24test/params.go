package bitrix24test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// object is a JSON-like object that remembers the order of its keys, so
// that batch commands run in the order they were sent.
type object struct {
	keys []string
	vals map[string]any
}

func newObject() *object { return &object{vals: map[string]any{}} }

func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// lookup returns the value of the first key that exists, trying each
// spelling in turn ("id", "ID").
func (o *object) lookup(keys ...string) (any, bool) {
	for _, k := range keys {
		if v, ok := o.vals[k]; ok {
			return v, true
		}
	}
	return nil, false
}

// readParams collects a request's parameters: the query string, then the
// body (urlencoded, multipart or JSON), into one nested object.
func readParams(r *http.Request) (*object, error) {
	params := newObject()
	if err := parseQuery(params, r.URL.RawQuery); err != nil {
		return nil, err
	}
	if r.Body == nil || r.Method == http.MethodGet {
		return params, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return params, nil
		}
		v, err := decodeJSON(body)
		if err != nil {
			return nil, fmt.Errorf("bad json body: %w", err)
		}
		obj, ok := v.(*object)
		if !ok {
			return nil, fmt.Errorf("json body is not an object")
		}
		for _, k := range obj.keys {
			params.set(k, obj.vals[k])
		}
	case "multipart/form-data":
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, err
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(io.LimitReader(part, 1<<20))
			if err != nil {
				return nil, err
			}
			setBracket(params, part.FormName(), string(b))
			_ = part.Close()
		}
	default: // urlencoded and anything else that looks like a form
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if err := parseQuery(params, string(body)); err != nil {
			return nil, err
		}
	}
	return params, nil
}

// parseQuery adds the pairs of a query string, in order, to params.
func parseQuery(params *object, q string) error {
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return fmt.Errorf("bad query key %q: %w", k, err)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return fmt.Errorf("bad query value for %q: %w", key, err)
		}
		setBracket(params, key, val)
	}
	return nil
}

// setBracket stores value under a PHP-style key: "fields[TITLE]",
// "select[]", "filter[>ID]", "fields[PHONE][0][VALUE]".
func setBracket(root *object, key, value string) {
	name, rest, found := strings.Cut(key, "[")
	if !found || name == "" {
		root.set(key, value)
		return
	}
	path := []string{name}
	for rest != "" {
		seg, after, ok := strings.Cut(rest, "]")
		if !ok {
			// Malformed: PHP keeps the remainder as part of the name.
			root.set(key, value)
			return
		}
		path = append(path, seg)
		rest = strings.TrimPrefix(after, "[")
		if after != "" && !strings.HasPrefix(after, "[") {
			break
		}
	}
	cur := root
	for i, seg := range path {
		last := i == len(path)-1
		if seg == "" { // "[]": append
			seg = strconv.Itoa(len(cur.keys))
		}
		if last {
			cur.set(seg, value)
			return
		}
		next, ok := cur.vals[seg].(*object)
		if !ok {
			next = newObject()
			cur.set(seg, next)
		}
		cur = next
	}
}

// decodeJSON decodes JSON keeping object key order; numbers stay json.Number.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return decodeValue(dec)
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := newObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				obj.set(k, v)
			}
			_, err := dec.Token()
			return obj, err
		case '[':
			var list []any
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

// scalar renders a parameter value as Bitrix24 stores it: a string.
func scalar(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "Y"
		}
		return "N"
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case int:
		return strconv.Itoa(t)
	}
	return fmt.Sprint(v)
}

// list returns the elements of a value sent as "select[]=A&select[]=B",
// "select[0]=A", a JSON array or a single string.
func list(v any) []any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		return t
	case *object:
		keys := append([]string(nil), t.keys...)
		sort.SliceStable(keys, func(i, j int) bool {
			a, ea := strconv.Atoi(keys[i])
			b, eb := strconv.Atoi(keys[j])
			if ea == nil && eb == nil {
				return a < b
			}
			return false
		})
		out := make([]any, 0, len(keys))
		for _, k := range keys {
			out = append(out, t.vals[k])
		}
		return out
	}
	return []any{v}
}

// plain converts parsed values to plain Go values for JSON answers and for
// storage: objects become map[string]any, scalars strings.
func plain(v any) any {
	switch t := v.(type) {
	case *object:
		if isList(t) {
			out := make([]any, 0, len(t.keys))
			for _, x := range list(t) {
				out = append(out, plain(x))
			}
			return out
		}
		m := make(map[string]any, len(t.keys))
		for _, k := range t.keys {
			m[k] = plain(t.vals[k])
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = plain(x)
		}
		return out
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = plain(x)
		}
		return m
	}
	return scalar(v)
}

// isList reports whether an object's keys are 0..n-1 (PHP's list).
func isList(o *object) bool {
	if len(o.keys) == 0 {
		return false
	}
	seen := make([]bool, len(o.keys))
	for _, k := range o.keys {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= len(seen) || seen[i] {
			return false
		}
		seen[i] = true
	}
	return true
}
