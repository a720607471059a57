-- Shared by every scenario script: thread bookkeeping, list files, an optional fixed
-- per-request delay (rate-limited runs), and a done() that prints one JSON line
-- ("BENCH_JSON {...}") with the summary and latency percentiles, which the harness
-- parses (more robust than scraping `wrk --latency` text).
--
-- Load with:  package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
--             local report = require("report")
local M = {}

local threads = {}
local counter = 0

-- setup() runs once per wrk thread in the main Lua state: number the threads so each
-- can take its own slice of a list file.
function M.setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- Reads a file of one value per line. With `slices`, returns the lines whose index
-- (0-based) is congruent to `slice` modulo `slices`: each thread owns disjoint values.
function M.read_lines(path, slice, slices)
  local lines = {}
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  local index = 0
  for line in file:lines() do
    if line ~= "" then
      if slices == nil or index % slices == slice then
        lines[#lines + 1] = line
      end
      index = index + 1
    end
  end
  file:close()
  assert(#lines > 0, "no lines for this thread in " .. path)
  return lines
end

-- wrk calls a global delay() before each request when it exists; BENCH_DELAY_MS turns
-- a run into a paced one (each connection waits that long between requests).
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms ~= nil and delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

-- Counts answers >= 300 by status code (wrk alone only counts >= 400, not by code).
-- With BENCH_STATUS=1 every script counts them; wrk then hands every response to Lua,
-- which costs it some speed, so only the low-rate, stateful scenarios turn it on.
local seen = {}
function M.count(status)
  if status >= 300 then
    seen[status] = (seen[status] or 0) + 1
    local parts = {}
    for code, count in pairs(seen) do
      parts[#parts + 1] = string.format('"%d": %d', code, count)
    end
    status_counts = table.concat(parts, ", ")
  end
end

if os.getenv("BENCH_STATUS") == "1" then
  function response(status, _headers, _body)
    M.count(status)
  end
end

local function number(value)
  if value == nil then
    return "null"
  end
  return string.format("%.3f", value)
end

function M.done(summary, latency, requests)
  local extra = {}
  local exhausted = 0
  for _, thread in ipairs(threads) do
    exhausted = exhausted + (tonumber(thread:get("exhausted")) or 0)
  end
  extra[#extra + 1] = string.format('"exhausted": %d', exhausted)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("status_counts")
    if counts ~= nil and counts ~= "" then
      statuses[#statuses + 1] = "{" .. counts .. "}"
    end
  end
  extra[#extra + 1] = '"statuses_by_thread": [' .. table.concat(statuses, ", ") .. "]"
  local percentiles = {}
  for _, p in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
    percentiles[#percentiles + 1] = string.format('"%s": %s', tostring(p), number(latency:percentile(p) / 1000))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %s, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_ms": {"mean": %s, "max": %s, "stdev": %s, "percentiles": {%s}}, %s}\n',
    summary.requests, number(summary.duration / 1e6), summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    number(latency.mean / 1000), number(latency.max / 1000), number(latency.stdev / 1000),
    table.concat(percentiles, ", "), table.concat(extra, ", ")))
end

return M
