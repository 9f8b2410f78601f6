-- Who and what uses the endpoints: by endpoint, model, requester and request tag.

-- name: Usage by endpoint
-- chart: bar x=endpoint_name y=input_tokens,output_tokens
SELECT
  endpoint_name,
  count(*) AS requests,
  coalesce(sum(input_tokens), 0) AS input_tokens,
  coalesce(sum(output_tokens), 0) AS output_tokens,
  coalesce(sum(total_tokens), 0) AS total_tokens
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
ORDER BY total_tokens DESC, endpoint_name;

-- name: Usage by model
-- chart: bar x=destination_model y=total_tokens
SELECT
  destination_model,
  count(*) AS requests,
  coalesce(sum(total_tokens), 0) AS total_tokens
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY destination_model
ORDER BY total_tokens DESC, destination_model;

-- name: Usage by requester
-- chart: bar x=requester y=requests
SELECT
  requester,
  count(*) AS requests,
  count(DISTINCT endpoint_name) AS endpoints,
  coalesce(sum(total_tokens), 0) AS total_tokens
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY requester
ORDER BY requests DESC, requester;

-- name: Usage by request tag
-- chart: bar x=tag y=requests
SELECT
  concat(tag_key, '=', tag_value) AS tag,
  count(*) AS requests,
  coalesce(sum(total_tokens), 0) AS total_tokens
FROM ai_gateway.usage
LATERAL VIEW explode(request_tags) tags AS tag_key, tag_value
WHERE NOT coalesce(cache_hit, false)
GROUP BY tag_key, tag_value
ORDER BY requests DESC, tag;

-- name: Daily tokens per endpoint
-- chart: line x=event_date y=total_tokens series=endpoint_name
SELECT
  event_date,
  endpoint_name,
  coalesce(sum(total_tokens), 0) AS total_tokens
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY event_date, endpoint_name
ORDER BY event_date, endpoint_name;
