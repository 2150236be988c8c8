-- Failed deliveries in the last 24 hours, with their last error.
--
-- A delivery is the durable job that posts one event to a platform
-- endpoint: its attempts are the outbound rows with operation = 'deliver'
-- (source = the delivery's destination, the route's name). A delivery
-- failed when its latest attempt in the window ended 'failed' (refused for
-- good: 410 Gone, error 'gone', which also disables the route) or 'dead'
-- (the retry schedule is spent and the job is dead-lettered; `hookgate dead
-- replay` sends it again). Deliveries still
-- retrying, or replayed and then delivered, are not listed.
--
-- One row per event and destination, newest failure first.
SELECT
    event_id,
    source AS destination,
    argMax(outcome, ts) AS final_outcome,
    argMax(error, ts) AS last_error,
    argMax(status, ts) AS last_status,
    max(attempt) AS attempts,
    min(ts) AS first_attempt_at,
    max(ts) AS last_attempt_at
FROM hookgate.exchanges
WHERE direction = 'outbound'
  AND operation = 'deliver'
  AND ts >= now() - INTERVAL 24 HOUR
GROUP BY event_id, source
HAVING final_outcome IN ('failed', 'dead')
ORDER BY last_attempt_at DESC, event_id
