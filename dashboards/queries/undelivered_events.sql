-- Events that never reached a final delivery.
--
-- An event is the inbound request hookgate accepted (direction 'inbound',
-- outcome 'accepted'); its route's work carries the same event_id: Bitrix24
-- calls (outbound, operation = the REST method) and deliveries (outbound,
-- operation = 'deliver'). Listed: events accepted in the last 7 days that
-- were routed (at least one outbound row) but have no delivery attempt with
-- outcome 'ok' (or 'suppressed': the echo of hookgate's own write, which
-- needs no delivery; docs/sync.md). Events no route matched have no outbound row and are not
-- listed: nothing was due. A route without a deliver step shows here as
-- 'not delivered' (its calls are all it does).
--
-- state says where the event stands:
--   dead          a call or delivery was dead-lettered (replay it with `hookgate dead replay`)
--   failed        a call or delivery failed for good (a permanent error)
--   retrying      the last outbound attempt ended 'retry': a job waits for its next attempt
--   not delivered otherwise (e.g. the calls succeeded and no delivery was made)
-- Oldest first.
SELECT
    event_id,
    anyIf(source, direction = 'inbound') AS source_id,
    anyIf(event, direction = 'inbound') AS event_name,
    minIf(ts, direction = 'inbound') AS received_at,
    countIf(direction = 'outbound' AND operation != 'deliver') AS calls,
    countIf(direction = 'outbound' AND operation = 'deliver') AS delivery_attempts,
    argMaxIf(operation, ts, direction = 'outbound') AS last_operation,
    argMaxIf(outcome, ts, direction = 'outbound') AS last_outcome,
    argMaxIf(error, ts, direction = 'outbound') AS last_error,
    multiIf(
        countIf(outcome = 'dead') > 0, 'dead',
        countIf(outcome = 'failed') > 0, 'failed',
        last_outcome = 'retry', 'retrying',
        'not delivered') AS state
FROM hookgate.exchanges
WHERE ts >= now() - INTERVAL 7 DAY
  AND event_id != ''
GROUP BY event_id
HAVING countIf(direction = 'inbound' AND outcome = 'accepted') > 0
   AND countIf(direction = 'outbound') > 0
   AND countIf(direction = 'outbound' AND operation = 'deliver' AND outcome IN ('ok', 'suppressed')) = 0
ORDER BY received_at, event_id
