-- POST an OAuth2 password form (fastapi-users' /auth/jwt/login: username, password),
-- distinct seeded users from BENCH_EMAILS, one slice per thread.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local emails
local index = 0
local password = os.getenv("BENCH_PASSWORD")

local function encode(value)
  return (value:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

function init(_args)
  emails = report.read_lines(os.getenv("BENCH_EMAILS"), tonumber(id), tonumber(os.getenv("BENCH_THREADS")))
end

function request()
  index = index % #emails + 1
  local body = "username=" .. encode(emails[index]) .. "&password=" .. encode(password)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
