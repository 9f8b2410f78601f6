-- Overview of ai_query traffic: volume, tokens, people, and the daily trend.
-- Each query runs unchanged on the usage table (default name ai_gateway.usage) in Spark SQL or Databricks SQL.
-- `-- name:` titles a chart; `-- chart:` tells aiquery's dashboard renderer how to draw it.

-- name: Totals
-- chart: kpi
SELECT
  count(*) AS requests,
  coalesce(sum(total_tokens), 0) AS total_tokens,
  count(DISTINCT requester) AS requesters,
  count(DISTINCT endpoint_name) AS endpoints,
  count(DISTINCT call_id) AS calls
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false);

-- name: Daily requests and requesters
-- chart: line x=event_date y=requests,requesters
SELECT
  event_date,
  count(*) AS requests,
  count(DISTINCT requester) AS requesters
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY event_date
ORDER BY event_date;

-- name: Top endpoints by tokens
-- chart: bar x=endpoint_name y=total_tokens
SELECT
  endpoint_name,
  coalesce(sum(total_tokens), 0) AS total_tokens,
  count(*) AS requests
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
ORDER BY total_tokens DESC, endpoint_name
LIMIT 10;

-- name: Top requesters by tokens
-- chart: bar x=requester y=total_tokens
SELECT
  requester,
  coalesce(sum(total_tokens), 0) AS total_tokens,
  count(*) AS requests
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY requester
ORDER BY total_tokens DESC, requester
LIMIT 10;
