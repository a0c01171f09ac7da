-- wrk script of bench/api.py: GET a random file id of a list with an Authorization header, and
-- print the summary as one JSON line (the bench parses it). Environment:
--   BENCH_WRK_IDS   file with one id per line
--   BENCH_WRK_PATH  path template with {id}
--   BENCH_WRK_AUTH  the Authorization header value ("" for none)
local ids = {}
for line in io.lines(os.getenv("BENCH_WRK_IDS")) do
  ids[#ids + 1] = line
end
local template = os.getenv("BENCH_WRK_PATH")
local auth = os.getenv("BENCH_WRK_AUTH") or ""
local headers = {}
if auth ~= "" then
  headers["Authorization"] = auth
end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(_)
  math.randomseed(7 + (tonumber(wrk.thread:get("seed")) or 0))
end

function request()
  local path = string.gsub(template, "{id}", ids[math.random(#ids)])
  return wrk.format("GET", path, headers)
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
