-- POST /v1/auth/refresh with a fresh, never-used refresh token per request. Thread n
-- reads BENCH_POOL_DIR/pool-<n>.txt, prepared by the harness so that a token only comes
-- up after its predecessor was rotated (see bench/harness/tokens.py). When the pool runs
-- out the thread counts "exhausted" and sends a malformed token (a 4xx, visible as such).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local pool
local index = 0
local exhausted = 0

function init(_args)
  pool = report.read_lines(os.getenv("BENCH_POOL_DIR") .. "/pool-" .. id .. ".txt")
end

function request()
  index = index + 1
  local token = pool[index]
  if token == nil then
    exhausted = exhausted + 1
    wrk.thread:set("exhausted", exhausted)
    token = "pool-exhausted"
  end
  local body = string.format('{"refresh_token":"%s"}', token)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
