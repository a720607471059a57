-- POST the token endpoint with grant_type=client_credentials, HTTP Basic client
-- authentication (RFC 6749 section 2.3.1). BENCH_CLIENT_ID / BENCH_CLIENT_SECRET name the
-- client; BENCH_FORM adds parameters (e.g. "&scope=...&resource=...").
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local headers
local body = "grant_type=client_credentials" .. (os.getenv("BENCH_FORM") or "")

function init(_args)
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC"),
  }
end

function request()
  return wrk.format("POST", nil, headers, body)
end
