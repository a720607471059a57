-- GET the URL as given (healthz, JWKS): no headers, no body.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

setup = report.setup
done = report.done
