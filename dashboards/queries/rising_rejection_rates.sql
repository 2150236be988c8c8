-- Sources whose rejection rate is rising.
--
-- For each inbound source, the share of its requests rejected (outcome
-- 'rejected': bad token or signature, oversized or unreadable body, ...) in
-- the last 24 hours against the 7 days before. A source is listed when the
-- last 24 hours hold at least 3 rejections and a rate at least twice the
-- baseline; with no baseline rejections (or no baseline traffic) the 3
-- rejections alone qualify it. Requests for a source or API key that does
-- not exist are rejected before a source is known: they show as
-- '(unknown)'. Steepest rise first.
SELECT
    if(source = '', '(unknown)', source) AS source_id,
    countIf(ts >= now() - INTERVAL 24 HOUR) AS recent_requests,
    countIf(ts >= now() - INTERVAL 24 HOUR AND outcome = 'rejected') AS recent_rejected,
    countIf(ts < now() - INTERVAL 24 HOUR) AS baseline_requests,
    countIf(ts < now() - INTERVAL 24 HOUR AND outcome = 'rejected') AS baseline_rejected,
    round(recent_rejected / greatest(recent_requests, 1), 4) AS recent_rate,
    round(baseline_rejected / greatest(baseline_requests, 1), 4) AS baseline_rate
FROM hookgate.exchanges
WHERE direction = 'inbound'
  AND ts >= now() - INTERVAL 8 DAY
GROUP BY source
HAVING recent_rejected >= 3 AND recent_rate >= 2 * baseline_rate
ORDER BY recent_rate - baseline_rate DESC, source_id
