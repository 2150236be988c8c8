package gateway

import (
	"fmt"
	"runtime/debug"

	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate"
)

// maxPanicText bounds the panic value written to the log.
const maxPanicText = 512

// recoverPanic answers a request whose handler panicked with 500
// {"error":"internal"} (a webhook gets its history row like any other
// rejected request), logs the panic with its stack and goes on serving:
// one request never stops the gateway. The panic value is logged through
// the secret store's redaction; the request's path and body are not logged
// (a key-routed path holds the API key). Deferred by guard around every
// request the app serves: webhooks, the admin API, the console, /metrics.
func (g *Gateway) recoverPanic(fctx *fasthttp.RequestCtx) {
	r := recover()
	if r == nil {
		return
	}
	text := fmt.Sprint(r)
	if len(text) > maxPanicText {
		text = text[:maxPanicText]
	}
	if g.deps.Secrets != nil {
		text = g.deps.Secrets.Redact(text)
	}
	g.log.Error("request handler panicked; answered 500", "method", string(fctx.Method()),
		"panic", text, "stack", string(debug.Stack()))
	if g.deps.Panicked != nil {
		g.deps.Panicked()
	}
	defer func() {
		if r := recover(); r != nil { // the answer itself failed: a bare 500
			fctx.Response.Reset()
			fctx.Error(`{"error":"internal"}`, fasthttp.StatusInternalServerError)
			fctx.SetContentType("application/json")
		}
	}()
	fctx.Response.Reset()
	fctx.SetConnectionClose()
	c := g.app.AcquireCtx(fctx)
	defer g.app.ReleaseCtx(c)
	err := hookgate.Errorf(hookgate.EInternal, "internal error")
	if in, ok := g.webhookPath(c.Path()); ok {
		_ = g.finish(c, in, err)
		return
	}
	_ = writeError(c, err)
}
