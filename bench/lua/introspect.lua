-- POST the introspection endpoint (RFC 7662) with HTTP Basic client authentication,
-- token=<one of BENCH_TOKENS, round-robin>.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local tokens
local index
local headers

function init(_args)
  tokens = report.read_lines(os.getenv("BENCH_TOKENS"))
  index = (tonumber(id) * 7919) % #tokens
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
  }
end

function request()
  index = index % #tokens + 1
  return wrk.format("POST", nil, headers, "token=" .. tokens[index] .. "&token_type_hint=access_token")
end
