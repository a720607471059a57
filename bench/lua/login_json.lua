-- POST /v1/auth/login {email, password}: distinct seeded users, each thread walking its
-- own slice of BENCH_EMAILS; every user has the password BENCH_PASSWORD.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local emails
local index = 0
local password = os.getenv("BENCH_PASSWORD")

function init(_args)
  emails = report.read_lines(os.getenv("BENCH_EMAILS"), tonumber(id), tonumber(os.getenv("BENCH_THREADS")))
end

function request()
  index = index % #emails + 1
  local body = string.format('{"email":"%s","password":"%s"}', emails[index], password)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
