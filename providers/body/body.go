// Package body reads webhook bodies for the provider adapters: it names a
// request's media type and decodes JSON, urlencoded and multipart bodies into
// the flat parameter map of hookgate's events (bracket keys kept, first value
// of a repeated name).
package body

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strings"

	"github.com/hookgate/hookgate"
)

// Kind is the family of a body's media type.
type Kind int

// Kinds of body.
const (
	Other     Kind = iota // anything else, or no Content-Type
	JSON                  // application/json, application/*+json
	Form                  // application/x-www-form-urlencoded
	Multipart             // multipart/form-data
)

func (k Kind) String() string {
	switch k {
	case JSON:
		return "json"
	case Form:
		return "form"
	case Multipart:
		return "multipart"
	}
	return "other"
}

// KindOf returns the kind of a Content-Type header value and its parameters
// (the multipart boundary). An unparseable value is Other.
func KindOf(contentType string) (Kind, map[string]string) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Other, nil
	}
	switch {
	case mt == "application/json", strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return JSON, params
	case mt == "application/x-www-form-urlencoded":
		return Form, params
	case mt == "multipart/form-data":
		return Multipart, params
	}
	return Other, params
}

// Decoded is a decoded body.
type Decoded struct {
	Kind   Kind
	Fields url.Values      // form fields (Form, Multipart: non-file parts only)
	JSON   json.RawMessage // the body when Kind is JSON (the same bytes: copy what you keep)
}

// Decode checks that body is non-empty and of one of the accepted kinds and
// decodes it. It returns *hookgate.Error values: EUnsupportedMedia for a kind
// not in accept, EBadRequest for an empty or malformed body. A kind of Other
// in accept takes any body as it is.
func Decode(contentType string, body []byte, accept ...Kind) (*Decoded, error) {
	kind, params := KindOf(contentType)
	if !accepts(accept, kind) {
		return nil, hookgate.Errorf(hookgate.EUnsupportedMedia, "content type %q is not accepted", mediaType(contentType))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, hookgate.Errorf(hookgate.EBadRequest, "empty body")
	}
	d := &Decoded{Kind: kind}
	switch kind {
	case JSON:
		if !json.Valid(body) {
			return nil, hookgate.Errorf(hookgate.EBadRequest, "malformed JSON body")
		}
		// not a copy: the body is the gateway's for the call, and a
		// large one would cost its size again (docs/performance.md)
		d.JSON = json.RawMessage(body)
	case Form:
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, hookgate.Errorf(hookgate.EBadRequest, "malformed form body")
		}
		d.Fields = v
	case Multipart:
		v, err := multipartFields(body, params["boundary"])
		if err != nil {
			return nil, hookgate.WrapError(hookgate.EBadRequest, "malformed multipart body", err)
		}
		d.Fields = v
	}
	return d, nil
}

func accepts(accept []Kind, k Kind) bool {
	for _, a := range accept {
		if a == k || a == Other {
			return true
		}
	}
	return false
}

// mediaType returns the media type of a Content-Type value without its
// parameters, for messages (it is caller-controlled text, so keep it short).
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	if len(mt) > 64 {
		mt = mt[:64] + "..."
	}
	return mt
}

// multipartFields reads the non-file parts of a multipart/form-data body.
// File parts (those with a file name) are skipped: they are kept in the raw
// body, never in the parameters.
func multipartFields(body []byte, boundary string) (url.Values, error) {
	if boundary == "" {
		return nil, errors.New("no boundary")
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	fields := url.Values{}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := p.FormName()
		if name == "" || p.FileName() != "" {
			p.Close()
			continue
		}
		v, err := io.ReadAll(p)
		p.Close()
		if err != nil {
			return nil, err
		}
		fields.Add(name, string(v))
	}
	return fields, nil
}

// Params merges query and form fields into one flat map: the first value of
// each name, form fields over query parameters of the same name (the body is
// the payload; the query string only addresses it).
func Params(query, fields url.Values) map[string]string {
	m := make(map[string]string, len(query)+len(fields))
	for k, vs := range query {
		if len(vs) > 0 {
			m[k] = vs[0]
		}
	}
	for k, vs := range fields {
		if len(vs) > 0 {
			m[k] = vs[0]
		}
	}
	return m
}

// StringField returns the top-level string field name of a JSON object, and
// whether it was there. Anything else (not an object, not a string) is
// reported as absent; of repeated names the last counts, as in a map. doc
// is meant to be valid JSON (as Decode returns it): the object's members
// are skipped over, not decoded, and only the field's value is unmarshaled
// (FuzzStringField compares it with unmarshaling the whole object). The
// gain over encoding/json is measured in docs/performance.md.
func StringField(doc json.RawMessage, name string) (string, bool) {
	var raw [1][]byte
	if !topLevelFields(doc, []string{name}, raw[:]) || raw[0] == nil {
		return "", false
	}
	return unmarshalString(raw[0])
}

// StringFields is StringField for several names in one pass over doc: the
// value of names[i] is at [i], "" where StringField reports it absent.
func StringFields(doc json.RawMessage, names ...string) []string {
	values := make([]string, len(names))
	raw := make([][]byte, len(names))
	if !topLevelFields(doc, names, raw) {
		return values
	}
	for i, r := range raw {
		if r != nil {
			values[i], _ = unmarshalString(r)
		}
	}
	return values
}

func unmarshalString(raw []byte) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// topLevelFields sets found[i] to the raw value of the last member called
// names[i] of the JSON object doc (nil when there is none), and reports
// whether doc is an object it could read to its end.
func topLevelFields(doc []byte, names []string, found [][]byte) bool {
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return false
	}
	for i++; ; {
		i = skipSpace(doc, i)
		if i >= len(doc) {
			break
		}
		switch doc[i] {
		case '}':
			return true
		case ',':
			i++
			continue
		case '"':
		default:
			clear(found)
			return false
		}
		kEnd := skipString(doc, i)
		if kEnd < 0 {
			break
		}
		key := doc[i:kEnd]
		i = skipSpace(doc, kEnd)
		if i >= len(doc) || doc[i] != ':' {
			break
		}
		i = skipSpace(doc, i+1)
		vEnd := skipValue(doc, i)
		if vEnd < 0 {
			break
		}
		for j, name := range names {
			if keyIs(key, name) {
				found[j] = doc[i:vEnd]
			}
		}
		i = vEnd
	}
	clear(found)
	return false
}

func skipSpace(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at doc[i] (a
// quote), or -1 when it does not end.
func skipString(doc []byte, i int) int {
	for i++; i < len(doc); i++ {
		switch doc[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the value starting at doc[i], or -1.
func skipValue(doc []byte, i int) int {
	if i >= len(doc) {
		return -1
	}
	switch doc[i] {
	case '"':
		return skipString(doc, i)
	case '{', '[':
		depth := 0
		for ; i < len(doc); i++ {
			switch doc[i] {
			case '"':
				if i = skipString(doc, i); i < 0 {
					return -1
				}
				i-- // the loop's i++
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	start := i
	for i < len(doc) && !strings.ContainsRune(",}] \t\r\n", rune(doc[i])) {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

// keyIs reports whether the quoted key (escapes and all) is name.
func keyIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key[1:len(key)-1]) == name
	}
	var k string
	return json.Unmarshal(key, &k) == nil && k == name
}
