package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/providers/body"
)

// redaction builds the redacted view of one request: the text the event
// and the history row show of its body, parameters, headers and URL. It
// redacts from decoded values, not only from the byte forms of a secret
// that are known in advance: a credential sent as lower-case percent-hex
// (%6a%76...), in a quoted-printable or base64 multipart part, or
// JSON-escaped (\u0063...) is found once its field is decoded, and that
// field's occurrence in the body is masked whatever its encoding.
//
// A value is secret when the store knows it (redact), or when it is the
// value of a field whose name is sensitive in this request (a credential
// name, the source's auth_parameter, a name the provider listed): those
// values are cut wherever else they appear too (a wrong token is still a
// credential).
type redaction struct {
	redact    func(string) string // the store's redaction of known values
	sensitive func(name string) bool
	extra     *hookgate.Redactor // values of sensitive fields in this request; nil = none
}

// value returns s with every secret value redacted.
func (r *redaction) value(s string) string {
	return r.extra.Redact(r.redact(s))
}

// holds reports whether the decoded text s holds a secret value.
func (r *redaction) holds(s string) bool { return r.value(s) != s }

// field returns the redacted view of a decoded field value: "[redacted]"
// for a sensitive name, the value with its secrets redacted otherwise.
func (r *redaction) field(name, v string) string {
	if r.sensitive(name) {
		return hookgate.Redacted
	}
	out := r.value(v)
	if out == v && r.encodedHolds(v) {
		return hookgate.Redacted
	}
	return out
}

// encodedHolds reports whether v, percent- or base64-decoded, holds a
// secret: a parameter or header a sender encoded (a base64 multipart part
// reaches the parameters as it was sent).
func (r *redaction) encodedHolds(v string) bool {
	if strings.ContainsAny(v, "%+") && r.holds(formUnescape(v)) {
		return true
	}
	if len(v) >= 8 && len(v)%4 == 0 && isBase64(v) && !isHexOrDigits(v) {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && r.holds(string(b)) {
			return true
		}
	}
	return false
}

// isHexOrDigits reports whether s is lower-case hex: an id or a hash, as
// many values are, which base64-decodes to bytes that are no text.
func isHexOrDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// body returns the redacted view of a request body of content type ctype.
// Forms, JSON and multipart bodies are redacted field by field from their
// decoded values (and stay well-formed); any other body, and what the
// field pass leaves, goes through the raw-form redaction as well.
func (r *redaction) body(ctype string, b []byte) string {
	s := string(b)
	var kind body.Kind
	var params map[string]string
	if strings.HasPrefix(ctype, "application/x-www-form-urlencoded") && !strings.Contains(ctype, ";") {
		kind = body.Form // the common case, without parsing the media type
	} else {
		kind, params = body.KindOf(ctype)
	}
	switch kind {
	case body.Form:
		s = r.form(s)
	case body.JSON:
		s = r.json(s)
	case body.Multipart:
		s = r.multipart(s, params["boundary"])
	default:
		// unlabelled form bodies are common (curl -d without a type)
		if looksLikeForm(s) {
			s = r.form(s)
		}
	}
	return r.value(s)
}

// looksLikeForm reports whether s reads as key=value pairs.
func looksLikeForm(s string) bool {
	t := strings.TrimSpace(s)
	return strings.Contains(t, "=") && !strings.HasPrefix(t, "{") && !strings.HasPrefix(t, "[") && !strings.HasPrefix(t, "<")
}

// form redacts a urlencoded body pair by pair: a pair whose decoded name
// is sensitive, or whose decoded value holds a secret, gets the value
// "[redacted]". Pairs are left byte for byte as they came otherwise; the
// body is copied only when something changes.
func (r *redaction) form(s string) string {
	var out []byte // nil until a value is redacted
	done := 0      // s[:done] is in out
	for start := 0; start <= len(s); {
		end := strings.IndexByte(s[start:], '&')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		pair := s[start:end]
		k, v, ok := strings.Cut(pair, "=")
		if ok && v != "" && (r.sensitive(formKeys.get(k)) || r.encodedSecret(v)) {
			if out == nil {
				out = make([]byte, 0, len(s)+16)
			}
			out = append(out, s[done:start]...)
			out = append(out, k...)
			out = append(out, '=')
			out = append(out, hookgate.Redacted...)
			done = end
		}
		start = end + 1
	}
	if out == nil {
		return s
	}
	return string(append(out, s[done:]...))
}

// encodedSecret reports whether a urlencoded value, once decoded, holds a
// secret. A value with no escape decodes to itself: the raw pass finds it.
func (r *redaction) encodedSecret(v string) bool {
	if !strings.ContainsAny(v, "%+") {
		return false
	}
	return r.holds(formUnescape(v))
}

// formKeys remembers decoded form keys: the same few come with every
// request, and most are escaped (auth%5Bdomain%5D).
var formKeys = newNameMemo(formUnescape)

// formUnescape decodes a urlencoded name or value; text that does not
// decode is taken as it is.
func formUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// json redacts a JSON document string by string: the value of a sensitive
// key becomes "[redacted]", and a string whose decoded text holds a secret
// is written again with its secrets redacted. A document that is not
// valid JSON is returned as it is (the raw pass still runs).
func (r *redaction) json(s string) string {
	if !strings.Contains(s, `\`) && !r.hasSensitiveKey(s) {
		return s // no escapes and no credential names: the raw pass suffices
	}
	var out []byte
	done := 0
	key := "" // the key whose value comes next, "" in arrays
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			continue
		}
		end := stringEnd(s, i)
		if end < 0 {
			return s
		}
		lit := s[i:end]
		j := end
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r') {
			j++
		}
		isKey := j < len(s) && s[j] == ':'
		var dec string
		if strings.IndexByte(lit, '\\') >= 0 {
			if err := json.Unmarshal([]byte(lit), &dec); err != nil {
				return s
			}
		} else {
			dec = lit[1 : len(lit)-1]
		}
		var repl string
		switch {
		case isKey:
			key = dec
		case key != "" && r.sensitive(key):
			repl = `"` + hookgate.Redacted + `"`
		case strings.IndexByte(lit, '\\') >= 0 && r.holds(dec):
			b, _ := json.Marshal(r.value(dec))
			repl = string(b)
		}
		if !isKey {
			key = ""
		}
		if repl != "" && repl != lit {
			out = append(out, s[done:i]...)
			out = append(out, repl...)
			done = end
		}
		i = end - 1
	}
	if out == nil {
		return s
	}
	return string(append(out, s[done:]...))
}

// hasSensitiveKey reports, cheaply, whether a JSON text may have a key
// that names a credential.
func (r *redaction) hasSensitiveKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			continue
		}
		end := stringEnd(s, i)
		if end < 0 {
			return false
		}
		if r.sensitive(s[i+1 : end-1]) {
			return true
		}
		i = end - 1
	}
	return false
}

// stringEnd returns the index just past the JSON string literal that
// starts at s[i] ('"'), or -1 when it does not end.
func stringEnd(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// multipart redacts a multipart/form-data body part by part: a part whose
// name is sensitive, or whose content, decoded as its
// Content-Transfer-Encoding says (quoted-printable, base64), holds a
// secret, gets the content "[redacted]". The body is written again with
// the same boundary when a part changes; one that does not parse is
// returned as it is (the raw pass still runs).
func (r *redaction) multipart(s, boundary string) string {
	if boundary == "" {
		return s
	}
	mr := multipart.NewReader(strings.NewReader(s), boundary)
	type part struct {
		header  textproto.MIMEHeader
		content []byte
	}
	var parts []part
	changed := false
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return s
		}
		raw, err := io.ReadAll(p)
		p.Close()
		if err != nil {
			return s
		}
		if r.sensitive(p.FormName()) || r.holds(decodePart(p.Header.Get("Content-Transfer-Encoding"), raw)) {
			raw, changed = []byte(hookgate.Redacted), true
		}
		parts = append(parts, part{p.Header, raw})
	}
	if !changed {
		return s
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(boundary); err != nil {
		return s
	}
	for _, p := range parts {
		pw, err := w.CreatePart(p.header)
		if err != nil {
			return s
		}
		pw.Write(p.content)
	}
	w.Close()
	return buf.String()
}

// decodePart decodes a part's raw content by its transfer encoding.
func decodePart(cte string, raw []byte) string {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		if b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err == nil {
			return string(b)
		}
	case "base64":
		clean := strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' {
				return -1
			}
			return r
		}, string(raw))
		if b, err := base64.StdEncoding.DecodeString(clean); err == nil {
			return string(b)
		}
	}
	return string(raw)
}
