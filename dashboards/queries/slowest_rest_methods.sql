-- The slowest Bitrix24 REST methods of the last 7 days.
--
-- One row per portal and method (the outbound rows whose operation is a
-- REST method, i.e. not 'deliver'), slowest 95th percentile first: the
-- number of attempts, the median, 95th and 99th percentile and the maximum
-- of duration_ms, and how many attempts did not end 'ok'. Only attempts
-- that got an HTTP answer (status > 0) are timed: an attempt refused before
-- it was sent (circuit_open) or cut by a timeout says nothing about the
-- method's speed. The percentiles are ClickHouse's quantile() estimates.
SELECT
    source AS portal,
    operation AS method,
    count() AS attempts,
    round(quantile(0.5)(duration_ms), 1) AS p50_ms,
    round(quantile(0.95)(duration_ms), 1) AS p95_ms,
    round(quantile(0.99)(duration_ms), 1) AS p99_ms,
    round(max(duration_ms), 1) AS max_ms,
    countIf(outcome != 'ok') AS not_ok
FROM hookgate.exchanges
WHERE direction = 'outbound'
  AND operation NOT IN ('', 'deliver')
  AND status > 0
  AND ts >= now() - INTERVAL 7 DAY
GROUP BY source, operation
ORDER BY p95_ms DESC, portal, method
LIMIT 20
