-- POST /v1/auth/signup {email, password}: a new address on every request (the soak's
-- signup flow; each one queues a verification mail in the outbox). Addresses are
-- "<BENCH_NONCE>-<thread>-<n>@example.com", so two runs never collide.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done

local nonce = os.getenv("BENCH_NONCE")
local password = os.getenv("BENCH_PASSWORD")
local sent = 0

function init(_args)
  sent = 0
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"email":"%s-%s-%d@example.com","password":"%s"}', nonce, tostring(id), sent, password
  )
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
