package telemetry

// Span names (docs/operations.md, "Tracing").
const (
	// SpanPublish is the store of the event on the bus, under the inbound
	// request's span (named "POST /webhook/{source}" or
	// "POST /webhooks/{api_key}", the HTTP route).
	SpanPublish = "publish hookgate.in"
	// SpanRoute is the routing of one event: its matching routes turned
	// into jobs. Its parent is the publish span, through the CloudEvent.
	SpanRoute = "route event"
	// SpanJob is one attempt of a job ("job route"), under SpanRoute;
	// an attempt after a wait links to the attempt before.
	SpanJob = "job "
	// SpanBitrix24 prefixes one Bitrix24 HTTP attempt: "bitrix24 crm.deal.get".
	SpanBitrix24 = "bitrix24 "
	// SpanDeliver is one delivery attempt to the platform.
	SpanDeliver = "deliver"
)

// Attribute keys. hookgate.* are hookgate's own; the others are
// OpenTelemetry semantic conventions.
const (
	AttrSource     = "hookgate.source"
	AttrProvider   = "hookgate.provider"
	AttrEvent      = "hookgate.event"
	AttrEventID    = "hookgate.event_id"
	AttrOutcome    = "hookgate.outcome"
	AttrErrorCode  = "hookgate.error_code"
	AttrDuplicate  = "hookgate.duplicate"
	AttrRoutes     = "hookgate.routes"
	AttrRoute      = "hookgate.route"
	AttrJobID      = "hookgate.job.id"
	AttrJobKind    = "hookgate.job.kind"
	AttrAttempt    = "hookgate.attempt"
	AttrLast       = "hookgate.attempt.last"
	AttrPortal     = "hookgate.portal"
	AttrMethod     = "bitrix24.method"
	AttrCommands   = "bitrix24.batch.commands"
	AttrLinkReason = "hookgate.link"

	AttrHTTPMethod   = "http.request.method"
	AttrHTTPRoute    = "http.route"
	AttrHTTPStatus   = "http.response.status_code"
	AttrURL          = "url.full"
	AttrClient       = "client.address"
	AttrMsgSystem    = "messaging.system"
	AttrMsgOperation = "messaging.operation.type"
	AttrMsgDest      = "messaging.destination.name"
	AttrMsgID        = "messaging.message.id"
)
