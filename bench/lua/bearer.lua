-- GET the URL with "Authorization: Bearer <token>", the tokens taken round-robin from
-- BENCH_TOKENS (one per line); each thread starts at a different offset.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local tokens
local index

function init(_args)
  tokens = report.read_lines(os.getenv("BENCH_TOKENS"))
  index = (tonumber(id) * 7919) % #tokens
end

function request()
  index = index % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[index] })
end
