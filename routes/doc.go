// Package routes ties inbound events to Bitrix24 calls and signed
// deliveries to the platform (SPEC.md "routes", issue 6).
//
// # Flow
//
// Engine.Run consumes the inbound stream (subjects hookgate.in.>) with one
// durable pull consumer, "routes", holding one message at a time, so events
// are routed in stream order, also across gateway instances sharing it. For
// each event it enqueues one durable job per matching route (package jobs):
//
//   - Job.ID  = <event id> "/" <route name>: the idempotency key. An event
//     delivered twice by its sender carries the same event id, so it makes
//     the same job id and Nats-Msg-Id and is stored once;
//   - Job.Key = <source id> "/" <rendered key template> (default
//     {{ param "data[FIELDS][ID]" }}): jobs of one entity run in order,
//     other entities in parallel, up to retry.workers at once; a job
//     waiting for its retry holds back only its own entity (package jobs:
//     lanes; docs/reliability.md "Per-key order");
//   - the inbound message is acknowledged only after all its jobs are
//     stored; if storing fails it is redelivered and the jobs already
//     stored de-duplicate.
//
// The consumer, when it does not exist yet, starts with the events stored
// from the moment the Engine was built (New, before the gateway listens):
// routes configured for the first time do not replay the stream's backlog
// (bus.max_age of old events) into deliveries. Later runs go on where the
// consumer stopped, so events accepted while routing was down are routed
// when it is back. A route added to the config applies to events routed
// after the restart.
//
// A job renders call.params (Go text/template over the event: `.` is the
// hookgate.Event, `param "data[FIELDS][ID]"` reads data.params, `json
// "a.b.0.c"` reads data.json), calls the portal with the event id and
// attempt in its context (history rows carry the event_id) through the
// portal's outbound.Batcher (Deps.Batchers): the calls of jobs running at
// once are gathered into one Bitrix24 batch request of up to 50 commands
// (halt=0), sent when the portal's bucket has a token, each command's
// result or error going back to its own job, so a failed command retries
// only that job; a route with call.batch: false calls alone. Then it POSTs the
// event with data.enrichment = {"portal", "method", "result"} to
// deliver.url, signed per Standard Webhooks with webhook-id = the job id,
// stable across retries. Failures are retried on retry.schedule: transient
// Bitrix24 errors and any non-2xx answer but 410; a Retry-After (HTTP 429
// or 503, Bitrix24's Retry-After, or OPERATION_TIME_LIMIT's reset time)
// sets the next attempt's time. Permanent Bitrix24 errors and template
// errors dead-letter the job at once.
//
// # Coalescing
//
// A route with coalesce: latest marks its jobs Job.Coalesce: jobs of one
// key that wait together behind a running or retrying job of that key
// are run once, as the latest of them with the others in Job.Covers. The
// run makes one call and one delivery of the latest event (the entity's
// latest state), with data.coalesced = the covered event ids, oldest
// first, its own last, and webhook-id = the latest job's id; each covered
// event gets its own delivery history row (delivery.Meta.Covers). Without
// it every event is delivered. Config validation allows it on read calls
// only (*.get, *.list).
//
// # Metrics
//
// Deps.Observe reports coalesced runs (hookgate_coalesced_events_total)
// and, when a job is done, its event's age (hookgate_route_lag_seconds);
// the Batcher reports commands per request (hookgate_batch_commands).
//
// # 410 Gone
//
// A 410 from the platform disables the route's deliveries: the route name
// goes into the KV bucket hookgate_routes_disabled (it survives restarts
// and is shared by all instances) and the job is dead-lettered. While the
// route is disabled its jobs are dead-lettered at once, before the
// Bitrix24 call, with an error naming the route, rather than parked: they
// stay visible in `hookgate dead list`, they do not block the entities
// behind them, and nothing is lost. Engine.Enable re-enables the route;
// the operator then replays the dead jobs (jobs.Queue.Replay, `hookgate
// dead replay ID`, POST /admin/dead/{id}/replay), which are delivered
// with their original webhook-id.
//
// # Wiring (cmd/hookgate serve)
//
//	js := bus.JetStream()
//	q, err := jobs.New(ctx, js, jobs.FromConfig(cfg.Retry),
//		jobs.WithLogger(log), jobs.WithObserver(jobs.Observer{Pending: ..., Dead: ...}))
//	disabled, err := routes.DisabledBucket(ctx, js, 1)
//	portals := map[string]*outbound.Bitrix24{} // one client per cfg.Portals entry,
//	// outbound.NewBitrix24(p, secretFunc, outbound.WithRecorder(historyWriter), ...)
//	batchers := map[string]*outbound.Batcher{} // outbound.NewBatcher(c, p.BatchWait.D(), p.BatchSize)
//	eng, err := routes.New(cfg.Routes, routes.Deps{
//		Queue: q, Portals: portals, Batchers: batchers, Secrets: store /* *vault.Store */,
//		Recorder: historyWriter, Logger: log, Disabled: disabled,
//		Stream: cfg.Bus.Stream,
//	})
//	g.Go(func() error { return eng.Run(gctx, js) }) // routes consumer + job workers
//
// Run returns once ctx ends, after a running job finished or was handed
// back (jobs.Config.StopGrace); drain the bus after it. The CLI and the
// admin API use the same jobs.Queue (built with jobs.New on the running
// gateway's bus) for `hookgate dead list|replay`: q.Dead(ctx),
// q.Replay(ctx, id); and eng.Enable / routes.EnableRoute(ctx, disabled,
// name) to re-enable a route.
package routes
