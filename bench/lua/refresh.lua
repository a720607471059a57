-- POST /v1/auth/refresh, every request with a fresh, never-used refresh token.
--
-- BENCH_POOL holds one refresh token per logged-in session, prepared by the harness;
-- thread n owns lines n, n + threads, ... Each answer carries the session's next refresh
-- token, which goes back into the thread's queue, as a real client would keep it: every
-- request rotates a token nobody presented before, and a token only comes up after its
-- predecessor's answer arrived. The pool holds more sessions than the thread has
-- connections, so the queue never runs dry unless answers fail; if it does, the thread
-- counts "exhausted" and sends GET /healthz instead (never a bad token: that would count
-- as a failed credential and trip the failure throttling).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local queue = {}
local first, last = 1, 0
exhausted = 0

local function push(token)
  last = last + 1
  queue[last] = token
end

local function pop()
  if first > last then
    return nil
  end
  local token = queue[first]
  queue[first] = nil
  first = first + 1
  return token
end

function init(_args)
  local threads = tonumber(os.getenv("BENCH_THREADS"))
  for _, token in ipairs(report.read_lines(os.getenv("BENCH_POOL"), tonumber(id), threads)) do
    push(token)
  end
end

function request()
  local token = pop()
  if token == nil then
    exhausted = exhausted + 1
    return wrk.format("GET", "/healthz")
  end
  local body = string.format('{"refresh_token":"%s"}', token)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function response(status, _headers, body)
  report.count(status)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token ~= nil then
      push(token)
    end
  end
end
