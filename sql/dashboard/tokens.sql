-- Token consumption: input against output, and how much of the input was served from a prompt cache.
-- Input tokens include cached ones, so the cached share is cache_read_input_tokens / input_tokens.

-- name: Input, output and cached tokens
-- chart: kpi
SELECT
  coalesce(sum(input_tokens), 0) AS input_tokens,
  coalesce(sum(output_tokens), 0) AS output_tokens,
  coalesce(sum(token_details.cache_read_input_tokens), 0) AS cached_input_tokens,
  round(100.0 * coalesce(sum(token_details.cache_read_input_tokens), 0) / nullif(sum(input_tokens), 0), 2)
    AS cached_share_pct,
  coalesce(sum(token_details.output_reasoning_tokens), 0) AS reasoning_tokens,
  count_if(tokens_estimated) AS estimated_requests
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false);

-- name: Daily input and output tokens
-- chart: line x=event_date y=input_tokens,output_tokens
SELECT
  event_date,
  coalesce(sum(input_tokens), 0) AS input_tokens,
  coalesce(sum(output_tokens), 0) AS output_tokens
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY event_date
ORDER BY event_date;

-- name: Tokens per endpoint
-- chart: bar x=endpoint_name y=input_tokens,output_tokens
SELECT
  endpoint_name,
  coalesce(sum(input_tokens), 0) AS input_tokens,
  coalesce(sum(output_tokens), 0) AS output_tokens,
  round(100.0 * coalesce(sum(token_details.cache_read_input_tokens), 0) / nullif(sum(input_tokens), 0), 2)
    AS cached_share_pct,
  round(avg(total_tokens), 1) AS avg_tokens_per_request
FROM ai_gateway.usage
WHERE NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
ORDER BY endpoint_name;
