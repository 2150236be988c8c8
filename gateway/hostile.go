package gateway

import (
	"bytes"
	"mime"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate"
)

// formFieldsOver reports whether a urlencoded or multipart body holds more
// than max fields. It counts separators ('&', or the multipart boundary)
// without decoding anything, so that a form of 100 000 fields costs one
// scan of its bytes before the credential is checked, not 100 000 map
// entries. Other bodies are not counted.
func formFieldsOver(contentType, body []byte, limit int) bool {
	ct := bytes.TrimSpace(contentType)
	switch {
	case hasPrefixFold(ct, "application/x-www-form-urlencoded"):
		return bytes.Count(body, []byte("&")) >= limit // n separators = n+1 fields
	case hasPrefixFold(ct, "multipart/"):
		_, params, err := mime.ParseMediaType(string(ct))
		if err != nil || params["boundary"] == "" {
			return false // the provider answers the malformed body
		}
		// every part starts with "--boundary", and the closing one too
		return bytes.Count(body, []byte("--"+params["boundary"])) > limit+1
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// guard answers, before Fiber routes it, what Fiber would answer in plain
// text or take as it comes: a method Fiber does not know (FOO, or PRI, the
// HTTP/2 connection preface) and a request with Content-Length headers that
// differ (fasthttp reads the body by the last one, so the sender and a proxy
// in front may disagree on where the request ends: the connection is
// closed after the answer).
func (g *Gateway) guard(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(fctx *fasthttp.RequestCtx) {
		var err error
		switch {
		case !knownMethod(fctx.Method()):
			if string(fctx.Method()) == "PRI" && string(fctx.Request.Header.Protocol()) == "HTTP/2.0" {
				err = hookgate.Errorf(hookgate.EBadRequest, "HTTP/2 with prior knowledge is not served: use HTTP/1.1")
			} else {
				err = hookgate.Errorf(hookgate.EMethodNotAllowed, "unknown method")
			}
		case conflictingContentLength(fctx.Request.Header.RawHeaders()):
			err = hookgate.Errorf(hookgate.EBadRequest, "conflicting Content-Length headers")
		default:
			defer g.recoverPanic(fctx)
			next(fctx)
			return
		}
		fctx.SetConnectionClose()
		c := g.app.AcquireCtx(fctx)
		defer g.app.ReleaseCtx(c)
		g.clientAddr(c)
		if in, ok := g.webhookPath(c.Path()); ok {
			_ = g.finish(c, in, err)
			return
		}
		if hookgate.ErrorCode(err) == hookgate.EMethodNotAllowed {
			// elsewhere the allowed methods vary: Allow: POST would be wrong
			err = hookgate.Errorf(hookgate.EBadRequest, "unknown method")
		}
		_ = writeError(c, err)
	}
}

// knownMethod reports whether Fiber routes method (its default methods).
func knownMethod(method []byte) bool {
	switch string(method) {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodPost, fiber.MethodPut, fiber.MethodDelete,
		fiber.MethodConnect, fiber.MethodOptions, fiber.MethodTrace, fiber.MethodPatch:
		return true
	}
	return false
}

var contentLength = []byte("content-length")

// conflictingContentLength reports whether raw request header lines hold
// Content-Length headers with different values. Equal repeats are allowed
// (RFC 9110, section 8.6).
func conflictingContentLength(raw []byte) bool {
	var first []byte
	seen := false
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), contentLength) {
			continue
		}
		v = bytes.TrimSpace(v)
		if seen && !bytes.Equal(v, first) {
			return true
		}
		first, seen = v, true
	}
	return false
}
